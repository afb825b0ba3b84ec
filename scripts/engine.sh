#!/usr/bin/env bash
# The local container engine: Podman serving the Docker Engine API on a unix socket.
#   scripts/engine.sh install   podman, runc, busybox-static from Debian's packages, if missing
#   scripts/engine.sh image     the offline `busybox` image (from busybox-static), if missing
#   scripts/engine.sh serve [SOCKET]
#                               run the API service in the foreground (make run's `engine`;
#                               without SOCKET it stands aside when DOCKER_HOST names
#                               another engine)
# Podman reads the project's deploy/podman/containers.conf (CONTAINERS_CONF; /etc untouched).
# The default socket is var/podman/podman.sock, which is DOCKER_HOST's default under make run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}"

log() { printf '[engine] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /bin/busybox ] || missing+=(busybox-static)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (Debian packages)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

image() {
  if podman image exists docker.io/library/busybox:latest \
    && podman image exists localhost/busybox:latest; then
    return 0
  fi
  install
  log "building the busybox image from /bin/busybox (no registry)"
  local rootfs
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' RETURN
  mkdir -p "$rootfs"/{bin,etc,tmp,root,output,input}
  cp /bin/busybox "$rootfs/bin/busybox"
  chroot "$rootfs" /bin/busybox --install -s /bin
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  chmod 1777 "$rootfs/tmp"
  tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/sh"]' - localhost/busybox:latest >/dev/null
  # The Docker API completes a short name to docker.io: answer there too.
  podman tag localhost/busybox:latest docker.io/library/busybox:latest
}

serve() {
  local socket=${1:-$ROOT/var/podman/podman.sock}
  if [ $# -eq 0 ] && [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != "unix://$socket" ]; then
    # The user pointed Jobgate at another engine (make run's `engine` line stays quiet).
    log "DOCKER_HOST is $DOCKER_HOST: not starting Podman"
    exec sleep infinity
  fi
  install
  image
  mkdir -p "$(dirname "$socket")"
  rm -f "$socket"
  cd "$(dirname "$socket")" # conmon leaves files in the working directory
  log "Docker Engine API on unix://$socket"
  exec podman system service --time=0 "unix://$socket"
}

case "${1:-}" in
  install) install ;;
  image) image ;;
  serve) shift; serve "$@" ;;
  *) echo "usage: $0 install|image|serve [SOCKET]" >&2; exit 2 ;;
esac
