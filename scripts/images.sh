#!/usr/bin/env bash
# Jobgate's container images, built with Podman from the project's Dockerfiles; no registry.
#   scripts/images.sh base    the local base images, if missing (REFRESH_BASE=1: made again):
#       localhost/jobgate/debian-base:bookworm  debootstrap --variant=minbase from this
#                                               machine's Debian mirror, then podman import
#       localhost/jobgate/python-base:3.11      deploy/images/python-base.Dockerfile on it
#                                               (Debian's python3, python3-venv, CA certs):
#                                               the base of every service image
#   scripts/images.sh build   base, then every image, localhost/jobgate/NAME:$IMAGE_TAG for
#                             gateway, auth, stats, worker, edge; checks each (uid 10001,
#                             imports, ffmpeg, yt-dlp, the edge's render and nginx -t) and
#                             lists the sizes
#   scripts/images.sh smoke   run the built auth-service, gateway, stats-service, edge and a
#                             cache worker as containers (host network, 127.0.0.1 only,
#                             read-only, no capabilities) against the host's PostgreSQL and
#                             RabbitMQ, in a database and vhost of their own; complete a cache
#                             job through the edge with the demo API key; print PASS or FAIL;
#                             always remove the containers, the database and the vhost
#   scripts/images.sh sizes   the images and their sizes
# Settings (environment):
#   IMAGE_TAG          tag of the built images (default local, as docker-compose.yml names them)
#   BASE_SUITE         Debian suite of the base images (default bookworm: Python 3.11)
#   DEBIAN_MIRROR      apt mirror for debootstrap (default: this machine's source for the suite)
#   PYTHON_BASE_IMAGE  base of the service images (the edge's too: nginx + jobgate-edge)
#                      instead of the local python-base (where a registry is reachable:
#                      python:3.11-slim, the Dockerfiles' default)
#   DEBIAN_BASE_IMAGE  base of python-base instead of the local debian-base
#                      (debian:bookworm-slim, python-base.Dockerfile's default)
#   smoke: SMOKE_PG_URL (postgresql://jobgate:jobgate@127.0.0.1:5432, a role that may create
#          databases), SMOKE_AMQP_USER/SMOKE_AMQP_PASSWORD (guest/guest), SMOKE_RABBITMQ_API
#          (http://127.0.0.1:15672), SMOKE_TIMEOUT (seconds one step may take, default 120)
# pip and apt inside a build get this machine's settings (index, CA of a TLS-inspecting
# proxy) as build secrets (deploy/images/pip_build_conf.py): never in a committed file or
# in an image layer. Full build output: var/images/NAME.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}"

IMAGE_TAG=${IMAGE_TAG:-local}
LOGS=$ROOT/var/images # each build's full output (the terminal shows a summary)
BASE_SUITE=${BASE_SUITE:-bookworm}
DEBIAN_BASE=localhost/jobgate/debian-base:$BASE_SUITE
PYTHON_BASE=localhost/jobgate/python-base:3.11
DEMO_API_KEY=demo-api-key-2024 # seed 000's public key: the smoke run's own throwaway stack
# name|Dockerfile|base (python or debian): every image `build` makes, in this order.
IMAGES=(
  "gateway|gateway/Dockerfile|python"
  "auth|auth-service/Dockerfile|python"
  "stats|stats-service/Dockerfile|python"
  "worker|worker-service/Dockerfile|python"
  "edge|deploy/nginx/Dockerfile|python"
)

log() { printf '[images] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
image_ref() { echo "localhost/jobgate/$1:$IMAGE_TAG"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# podman without systemd (these machines) says at every start and removal of a container
# with a HEALTHCHECK that it cannot time the checks: the smoke run runs them itself.
podman_quiet() { podman "$@" 2> >(grep -v 'unable to get systemd connection' >&2); }

# --- base images -----------------------------------------------------------------------------

# The URI of this machine's apt source for suite $1: deb822 files first, then one-line lists.
apt_source() {
  local suite=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$suite" '
      BEGIN { RS = ""; FS = "\n" }
      {
        uris = ""; suites = ""; types = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^#/) continue
          if (match($i, /^URIs:[ \t]*/)) uris = substr($i, RLENGTH + 1)
          else if (match($i, /^Suites:[ \t]*/)) suites = substr($i, RLENGTH + 1)
          else if (match($i, /^Types:[ \t]*/)) types = substr($i, RLENGTH + 1)
          else if (match($i, /^Enabled:[ \t]*/)) enabled = substr($i, RLENGTH + 1)
        }
        if (enabled == "no" || (" " types " ") !~ / deb /) next
        n = split(suites, s, /[ \t]+/)
        for (j = 1; j <= n; j++) if (s[j] == suite) { split(uris, u, /[ \t]+/); print u[1]; exit }
      }' "$f"
  done
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v suite="$suite" '
    $1 == "deb" {
      i = 2
      if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) == suite) { print $i; exit }
    }'
}

# Only a network mirror: the images' own apt (python-base, edge) must reach it too.
first_source() { apt_source "$1" | grep -E '^https?://' | head -n1 || true; }

# Build secrets of this machine's apt and pip settings, written to directory $1 (mode 700).
write_build_secrets() {
  local dir=$1 python
  python=$(command -v python3 || true)
  : >"$dir/pip.conf"
  : >"$dir/build-ca"
  : >"$dir/apt.conf"
  if [ -n "$python" ]; then
    "$python" "$ROOT/deploy/images/pip_build_conf.py" "$dir/pip.conf" "$dir/build-ca"
  fi
  # apt over https (a mirror or a TLS-inspecting proxy) trusts what this machine trusts.
  if [ ! -s "$dir/build-ca" ] && [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$dir/build-ca"
  fi
  if [ -s "$dir/build-ca" ]; then
    echo 'Acquire::https::CaInfo "/run/secrets/build-ca";' >"$dir/apt.conf"
  fi
}

SECRETS_DIR=""
CLEANUP_PATHS=()
cleanup() {
  local status=$? path
  set +e
  smoke_cleanup
  for path in "${CLEANUP_PATHS[@]}"; do as_root rm -rf "$path"; done
  return "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

prepare_secrets() { # once per run, removed at exit
  [ -n "$SECRETS_DIR" ] && return 0
  SECRETS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/jobgate-build.XXXXXX")
  CLEANUP_PATHS+=("$SECRETS_DIR")
  write_build_secrets "$SECRETS_DIR"
}

image_id() { podman image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# After a rebuild, the image a tag named before is untagged: it is removed at the end, newest
# first (a base goes once its old children have), unless something still uses it (a
# container, another tag). Build caches stay; `podman image prune` removes the stale ones.
REPLACED=()
drop_replaced() { # PREVIOUS_ID REF
  [ -n "$1" ] && [ "$1" != "$(image_id "$2")" ] && REPLACED=("$1" "${REPLACED[@]}")
  return 0
}
remove_replaced() {
  local id
  for id in "${REPLACED[@]}"; do podman rmi "$id" >/dev/null 2>&1 || true; done
  REPLACED=()
}

# podman build with the secrets; the docker format keeps HEALTHCHECK (OCI drops it).
podman_build() {
  local dir=$SECRETS_DIR
  [ -n "$dir" ] || die "prepare_secrets first"
  podman build --format docker --layers \
    --secret "id=pip.conf,src=$dir/pip.conf" \
    --secret "id=build-ca,src=$dir/build-ca" \
    --secret "id=apt.conf,src=$dir/apt.conf" \
    "$@"
}

make_debian_base() {
  local mirror updates security rootfs
  mirror=${DEBIAN_MIRROR:-$(first_source "$BASE_SUITE")}
  [ -n "$mirror" ] || die "no http(s) apt source for '$BASE_SUITE' in /etc/apt: set DEBIAN_MIRROR"
  updates=$(first_source "$BASE_SUITE-updates")
  security=$(first_source "$BASE_SUITE-security")
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap (Debian package)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq debootstrap >/dev/null
  fi
  rootfs=$(mktemp -d /var/tmp/jobgate-rootfs.XXXXXX)
  CLEANUP_PATHS+=("$rootfs")
  chmod 755 "$rootfs" # apt's download user must reach the lists and archives below it
  local logfile=$rootfs.log
  log "debootstrap --variant=minbase $BASE_SUITE from $mirror (about a minute)"
  as_root debootstrap --variant=minbase "$BASE_SUITE" "$rootfs" "$mirror" >"$logfile" 2>&1 \
    || { tail -n 20 "$logfile" >&2; die "debootstrap failed (log: $logfile)"; }
  # The image's apt sources: the suite, its updates and security updates where known.
  {
    echo "deb $mirror $BASE_SUITE main"
    [ -z "$updates" ] || echo "deb $updates $BASE_SUITE-updates main"
    [ -z "$security" ] || echo "deb $security $BASE_SUITE-security main"
  } | as_root tee "$rootfs/etc/apt/sources.list" >/dev/null
  as_root cp -r "$ROOT/deploy/images/rootfs/." "$rootfs/"
  log "applying $BASE_SUITE's updates"
  {
    as_root chroot "$rootfs" apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive as_root chroot "$rootfs" apt-get upgrade -y -qq \
      && as_root chroot "$rootfs" apt-get clean
  } >>"$logfile" 2>&1 \
    || { tail -n 20 "$logfile" >&2; die "apt-get upgrade failed (log: $logfile)"; }
  rm -f "$logfile"
  # What the dpkg excludes keep out of later installs, out of this one too; podman provides
  # /dev, /etc/hosts, /etc/resolv.conf and /etc/hostname.
  as_root find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  as_root find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  as_root find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias \
    -exec rm -rf {} +
  as_root rm -rf "$rootfs"/usr/share/{man,info,lintian}/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/debconf/*-old "$rootfs"/dev/* \
    "$rootfs"/etc/hostname "$rootfs"/etc/resolv.conf "$rootfs"/tmp/* "$rootfs"/var/tmp/*
  as_root find "$rootfs/var/log" -type f -exec truncate -s 0 {} +
  as_root truncate -s 0 "$rootfs/etc/machine-id" 2>/dev/null || true
  local previous
  previous=$(image_id "$DEBIAN_BASE")
  as_root tar --numeric-owner -C "$rootfs" -c . \
    | podman import --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' - "$DEBIAN_BASE" >/dev/null
  drop_replaced "$previous" "$DEBIAN_BASE"
  log "made $DEBIAN_BASE"
}

# Whether an image of IMAGES is built on debian-base itself (none now: the edge has Python).
uses_debian_base() {
  local entry
  for entry in "${IMAGES[@]}"; do [[ $entry == *"|debian" ]] && return 0; done
  return 1
}

base() {
  local refresh=${REFRESH_BASE:-}
  # Nothing to make when python-base is given and no image needs debian-base directly.
  [ -n "${PYTHON_BASE_IMAGE:-}" ] && { [ -n "${DEBIAN_BASE_IMAGE:-}" ] || ! uses_debian_base; } \
    && return 0
  command -v podman >/dev/null || die "podman is missing: make engine"
  if [ -z "${DEBIAN_BASE_IMAGE:-}" ] \
    && { [ -n "$refresh" ] || ! podman image exists "$DEBIAN_BASE"; }; then
    make_debian_base
    refresh=1 # python-base follows its new base
  fi
  if [ -z "${PYTHON_BASE_IMAGE:-}" ] \
    && { [ -n "$refresh" ] || ! podman image exists "$PYTHON_BASE"; }; then
    log "building $PYTHON_BASE"
    mkdir -p "$LOGS"
    prepare_secrets
    local previous
    previous=$(image_id "$PYTHON_BASE")
    podman_build --build-arg "BASE_IMAGE=${DEBIAN_BASE_IMAGE:-$DEBIAN_BASE}" \
      -f deploy/images/python-base.Dockerfile -t "$PYTHON_BASE" deploy/images \
      >"$LOGS/python-base.log" 2>&1 \
      || { tail -n 30 "$LOGS/python-base.log" >&2; die "building $PYTHON_BASE failed"; }
    drop_replaced "$previous" "$PYTHON_BASE"
  fi
}

# --- service images --------------------------------------------------------------------------

check_image() { # NAME: what the image promises, run in a throwaway container
  local name=$1 ref uid
  ref=$(image_ref "$name")
  local run=(podman run --rm --network none --no-healthcheck)
  uid=$("${run[@]}" "$ref" id -u)
  [ "$uid" = 10001 ] || die "$ref runs as uid $uid, not 10001"
  case $name in
    gateway | auth | stats)
      "${run[@]}" -e PROMETHEUS_MULTIPROC_DIR= "$ref" python -c "import jobgate_$name" ;;
    worker)
      # convert needs ffmpeg (the imageio-ffmpeg wheel's), scrape yt-dlp and PyAV.
      "${run[@]}" "$ref" sh -c \
        'ffmpeg=$(python -c "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())") \
          && "$ffmpeg" -hide_banner -version | head -n1 \
          && echo "yt-dlp $(yt-dlp --version)" \
          && python -c "import av; print(\"PyAV\", av.__version__)"' >&2 ;;
    edge)
      # The agent imports, its static configuration renders and nginx accepts it (upstreams
      # given as addresses: no network here).
      "${run[@]}" -e GATEWAY_UPSTREAM=127.0.0.1:1 -e STATS_UPSTREAM=127.0.0.1:2 "$ref" sh -c \
        'python -c "import jobgate_edge.agent" && command -v jobgate-edge >/dev/null \
          && "$EDGE_SCRIPT" render "$EDGE_STATE_DIR/nginx.conf" \
          && "$EDGE_NGINX" -t -q -e stderr -p "$EDGE_STATE_DIR/" -c "$EDGE_STATE_DIR/nginx.conf" \
          && "$EDGE_NGINX" -v' ;;
  esac
}

build() {
  mkdir -p "$LOGS"
  base
  prepare_secrets
  local python_base=${PYTHON_BASE_IMAGE:-$PYTHON_BASE}
  local debian_base=${DEBIAN_BASE_IMAGE:-$DEBIAN_BASE}
  local entry name dockerfile kind ref started previous total_started=$SECONDS
  for entry in "${IMAGES[@]}"; do
    IFS='|' read -r name dockerfile kind <<<"$entry"
    ref=$(image_ref "$name")
    started=$SECONDS
    log "building $ref from $dockerfile"
    local from=$python_base
    [ "$kind" = debian ] && from=$debian_base
    previous=$(image_id "$ref")
    podman_build --build-arg "BASE_IMAGE=$from" -f "$dockerfile" -t "$ref" . \
      >"$LOGS/$name.log" 2>&1 \
      || { tail -n 30 "$LOGS/$name.log" >&2; die "building $ref failed (log: $LOGS/$name.log)"; }
    drop_replaced "$previous" "$ref"
    check_image "$name"
    log "built $ref in $((SECONDS - started)) s"
  done
  remove_replaced
  log "all images built in $((SECONDS - total_started)) s"
  sizes
}

sizes() {
  podman images --filter reference='localhost/jobgate/*' \
    --format 'table {{.Repository}}:{{.Tag}} {{.Size}} {{.Created}}'
}

# --- smoke run -------------------------------------------------------------------------------

SMOKE_ID=""
SMOKE_WORK=""
SMOKE_DB=""
SMOKE_VHOST=""

USED_PORTS=" "
free_port() { # VAR START: a 127.0.0.1 port from START on, free and not handed out already
  local -n chosen=$1
  local port=$2
  while port_open "$port" || [[ $USED_PORTS == *" $port "* ]]; do port=$((port + 1)); done
  USED_PORTS+="$port "
  chosen=$port
}

rabbit_api() { # METHOD PATH [JSON]
  curl -fsS -u "$SMOKE_AMQP_USER:$SMOKE_AMQP_PASSWORD" -X "$1" -H 'content-type: application/json' \
    ${3:+--data "$3"} "$SMOKE_RABBITMQ_API/api$2" >/dev/null
}

psql_admin() { psql "$SMOKE_PG_URL/postgres" -v ON_ERROR_STOP=1 -qtA -c "$1"; }

smoke_cleanup() {
  if [ -n "$SMOKE_ID" ]; then
    local ids
    ids=$(podman ps -aq --filter "label=jobgate.smoke=$SMOKE_ID")
    # shellcheck disable=SC2086 # one argument per container id
    [ -n "$ids" ] && podman_quiet rm -f -t 10 $ids >/dev/null
  fi
  [ -n "$SMOKE_DB" ] \
    && psql_admin "DROP DATABASE IF EXISTS \"$SMOKE_DB\" WITH (FORCE)" >/dev/null 2>&1
  [ -n "$SMOKE_VHOST" ] && rabbit_api DELETE "/vhosts/$SMOKE_VHOST" 2>/dev/null
  return 0
}

smoke_logs() {
  local name
  for name in auth gateway stats worker-cache edge; do
    printf '\n--- %s (last 25 lines) ---\n' "$name" >&2
    podman logs --tail 25 "jobgate-smoke-$SMOKE_ID-$name" >&2 2>&1 || true
  done
}

smoke_fail() {
  echo "FAIL: $*"
  smoke_logs
  exit 1
}

wait_http() { # URL WHAT: until it answers 200, or fail after SMOKE_TIMEOUT
  local deadline=$((SECONDS + SMOKE_TIMEOUT))
  until curl -fsS -o /dev/null --max-time 5 "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || smoke_fail "$2 did not answer at $1 within $SMOKE_TIMEOUT s"
    sleep 1
  done
}

smoke() {
  SMOKE_PG_URL=${SMOKE_PG_URL:-postgresql://jobgate:jobgate@127.0.0.1:5432}
  SMOKE_AMQP_USER=${SMOKE_AMQP_USER:-guest}
  SMOKE_AMQP_PASSWORD=${SMOKE_AMQP_PASSWORD:-guest}
  SMOKE_RABBITMQ_API=${SMOKE_RABBITMQ_API:-http://127.0.0.1:15672}
  SMOKE_TIMEOUT=${SMOKE_TIMEOUT:-120}
  local name
  for name in gateway auth stats worker edge; do
    podman image exists "$(image_ref "$name")" || die "$(image_ref "$name") is missing: make images"
  done
  port_open 5432 || die "PostgreSQL does not answer on 127.0.0.1:5432: make services"
  port_open 5672 || die "RabbitMQ does not answer on 127.0.0.1:5672: make services"
  for name in psql curl jq; do command -v "$name" >/dev/null || die "$name is missing"; done

  SMOKE_ID=$(date +%s)$$
  SMOKE_DB=jobgate_smoke_$SMOKE_ID
  SMOKE_VHOST=jobgate-smoke-$SMOKE_ID
  SMOKE_WORK=$(mktemp -d "${TMPDIR:-/tmp}/jobgate-smoke.XXXXXX")
  CLEANUP_PATHS+=("$SMOKE_WORK")
  chmod 755 "$SMOKE_WORK"

  # A database and a vhost of its own: nothing else (make run, tests) sees its jobs.
  psql_admin "CREATE DATABASE \"$SMOKE_DB\"" >/dev/null \
    || die "could not create database $SMOKE_DB as $SMOKE_PG_URL (a role with CREATEDB)"
  rabbit_api PUT "/vhosts/$SMOKE_VHOST" \
    && rabbit_api PUT "/permissions/$SMOKE_VHOST/$SMOKE_AMQP_USER" \
      '{"configure": ".*", "write": ".*", "read": ".*"}' \
    || die "could not create vhost $SMOKE_VHOST through $SMOKE_RABBITMQ_API (management plugin)"

  # A small filespace (read-only in the containers), storage and the JWT key's directory,
  # owned by the images' user.
  local fs=$SMOKE_WORK/filespace count=0 bytes=0 i size
  mkdir -p "$fs/smoke/clips" "$SMOKE_WORK/storage" "$SMOKE_WORK/keys"
  for i in 1 2 3 4 5; do
    size=$((i * 100000 + 7))
    head -c "$size" /dev/urandom >"$fs/smoke/clips/clip$i.mov"
    count=$((count + 1)) bytes=$((bytes + size))
  done
  chmod -R a+rX "$fs"
  as_root chown 10001:10001 "$SMOKE_WORK/storage" "$SMOKE_WORK/keys"
  chmod 700 "$SMOKE_WORK/keys"

  # Ports clear of make run (8080-8083) and of the tests' ephemeral ones.
  local edge_port gateway_port auth_port stats_port metrics_port
  free_port edge_port 18480
  free_port gateway_port 18481
  free_port auth_port 18482
  free_port stats_port 18483
  free_port metrics_port 18491
  local admin_password
  admin_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')

  local common=(
    --network host --read-only --cap-drop ALL --security-opt no-new-privileges
    --label "jobgate.smoke=$SMOKE_ID"
    -e JOBGATE_ENV=development -e LOG_FORMAT=text -e LISTEN_HOST=127.0.0.1
    -e "DATABASE_URL=$SMOKE_PG_URL/$SMOKE_DB"
    -e "AMQP_URL=amqp://$SMOKE_AMQP_USER:$SMOKE_AMQP_PASSWORD@127.0.0.1:5672/$SMOKE_VHOST"
    -e "AUTH_SERVICE_URL=http://127.0.0.1:$auth_port"
  )
  local run=(podman_quiet run -d "${common[@]}")
  log "smoke $SMOKE_ID: database $SMOKE_DB, vhost $SMOKE_VHOST, edge on 127.0.0.1:$edge_port"

  log "migrating (the gateway image's jobgate-admin migrate)"
  podman_quiet run --rm "${common[@]}" "$(image_ref gateway)" jobgate-admin migrate >&2 \
    || smoke_fail "the migrations did not apply"

  "${run[@]}" --name "jobgate-smoke-$SMOKE_ID-auth" -e "PORT=$auth_port" \
    -v "$SMOKE_WORK/keys:/var/lib/jobgate/keys" \
    -e BOOTSTRAP_ADMIN_USERNAME=admin -e "BOOTSTRAP_ADMIN_PASSWORD=$admin_password" \
    -e "BOOTSTRAP_API_KEY=$DEMO_API_KEY" "$(image_ref auth)" >/dev/null
  wait_http "http://127.0.0.1:$auth_port/health" auth-service

  "${run[@]}" --name "jobgate-smoke-$SMOKE_ID-gateway" -e "PORT=$gateway_port" \
    -v "$fs:/data/filespace:ro" -v "$SMOKE_WORK/storage:/var/lib/jobgate/storage" \
    "$(image_ref gateway)" >/dev/null
  "${run[@]}" --name "jobgate-smoke-$SMOKE_ID-stats" -e "PORT=$stats_port" \
    "$(image_ref stats)" >/dev/null
  "${run[@]}" --name "jobgate-smoke-$SMOKE_ID-worker-cache" -e "WORKER_METRICS_PORT=$metrics_port" \
    -v "$fs:/data/filespace:ro" -v "$SMOKE_WORK/storage:/var/lib/jobgate/storage" \
    "$(image_ref worker)" jobgate-worker cache >/dev/null
  # jobgate-edge (nginx as its child), its state in the container's /tmp (a tmpfs: --read-only).
  "${run[@]}" --name "jobgate-smoke-$SMOKE_ID-edge" -e "EDGE_BIND=127.0.0.1:$edge_port" \
    -e "GATEWAY_UPSTREAM=127.0.0.1:$gateway_port" -e "STATS_UPSTREAM=127.0.0.1:$stats_port" \
    -e "EDGE_ID=smoke-$SMOKE_ID" "$(image_ref edge)" >/dev/null

  local edge=http://127.0.0.1:$edge_port
  wait_http "$edge/api/v1/health" "the gateway through the edge"
  # The agent applied the (empty) proxy set and said so in its database row.
  local applied="" deadline=$((SECONDS + SMOKE_TIMEOUT))
  until [ -n "$applied" ]; do
    applied=$(psql "$SMOKE_PG_URL/$SMOKE_DB" -qtA -c \
      "SELECT applied_generation FROM proxy_edges WHERE edge_id = 'smoke-$SMOKE_ID'
         AND applied_at IS NOT NULL" 2>/dev/null || true)
    [ -n "$applied" ] && break
    [ $SECONDS -lt $deadline ] || smoke_fail "the edge agent reported no applied set in proxy_edges"
    sleep 1
  done
  log "the edge agent runs nginx generation $applied"
  wait_http "http://127.0.0.1:$stats_port/health" stats-service
  wait_http "http://127.0.0.1:$metrics_port/metrics" "the cache worker's metrics"

  # Each image's own HEALTHCHECK, as an engine would run it.
  for name in auth gateway stats worker-cache edge; do
    podman healthcheck run "jobgate-smoke-$SMOKE_ID-$name" >/dev/null 2>&1 \
      || smoke_fail "the $name container's HEALTHCHECK failed"
  done

  log "submitting a cache job through the edge"
  local created job_id job status deadline=$((SECONDS + SMOKE_TIMEOUT))
  created=$(curl -sS --max-time 10 -X POST "$edge/api/v1/cache/jobs" \
    -H "X-API-Key: $DEMO_API_KEY" -H 'Content-Type: application/json' \
    -d '{"directories": ["smoke"], "recursive": true}')
  job_id=$(jq -r '.jobId // empty' <<<"$created")
  [ -n "$job_id" ] || smoke_fail "the job was not accepted: $created"
  while :; do
    job=$(curl -sS --max-time 10 -H "X-API-Key: $DEMO_API_KEY" "$edge/api/v1/cache/jobs/$job_id")
    status=$(jq -r '.job.status // empty' <<<"$job")
    case $status in completed | failed | cancelled) break ;; esac
    [ $SECONDS -lt $deadline ] || smoke_fail "job $job_id still '$status' after $SMOKE_TIMEOUT s"
    sleep 1
  done
  local summary
  summary=$(jq -c '.job | {id, status, files: .progress.files,
    bytes: .progress.size.completedBytes, error}' <<<"$job")
  [ "$status" = completed ] || smoke_fail "job $job_id ended $status: $summary"
  jq -e --argjson n "$count" --argjson b "$bytes" \
    '.job.progress.files.completed == $n and .job.progress.size.completedBytes == $b' \
    <<<"$job" >/dev/null \
    || smoke_fail "job $job_id completed, but not with $count files, $bytes bytes: $summary"

  # stats-service through the edge: the job's events include its completion.
  local events
  events=$(curl -sS --max-time 10 -H "X-API-Key: $DEMO_API_KEY" \
    "$edge/api/v1/jobs/$job_id/events?format=json")
  jq -e 'any(.events[]; .event == "completed" and .status == "completed")' \
    <<<"$events" >/dev/null \
    || smoke_fail "stats-service (through the edge) has no completion event for $job_id: $events"

  sizes
  echo "PASS: cache job $job_id completed through the edge by the cache worker's container:"
  echo "      $summary"
}

case "${1:-}" in
  base) base && remove_replaced ;;
  build) build ;;
  smoke) smoke ;;
  sizes) sizes ;;
  *) echo "usage: $0 base|build|smoke|sizes" >&2; exit 2 ;;
esac
