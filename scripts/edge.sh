#!/usr/bin/env bash
# The edge: nginx (Debian's package) in front of the gateway and stats-service, on one address.
#   scripts/edge.sh install          Debian's `nginx` package (the binary with its built-in
#                                    modules, no extra ones), if missing
#   scripts/edge.sh render [OUTPUT]  write the configuration (default var/edge/nginx.conf)
#   scripts/edge.sh serve            render, check (nginx -t), then run nginx in the foreground
#                                    (make run's `edge` process)
# Settings, from the environment (what you export wins, as everywhere under make run):
#   EDGE_BIND           127.0.0.1:8080                the public address
#   GATEWAY_UPSTREAM    $GATEWAY_BIND or 127.0.0.1:8083
#   STATS_UPSTREAM      $STATS_BIND or 127.0.0.1:8082
#   EDGE_MAX_BODY_SIZE  (the larger of MAX_FILE_SIZE and 16, plus 1) MB: above the gateway's
#                       own limits, so the gateway's 413 answers first
#   EDGE_WORKERS        2                             nginx worker processes
#   EDGE_TRUSTED_PROXIES (empty)                      comma-separated addresses/CIDRs of proxies
#                       in front of the edge (a load balancer, ingress-nginx): from those the
#                       client is taken from X-Forwarded-For (nginx realip, recursive), so
#                       $remote_addr - the X-Forwarded-For/X-Real-IP sent on, the access log,
#                       per-client limits - is the real client. Empty: the edge is the first
#                       hop and its peer is the client
# Nothing under /etc/nginx is read or written: the rendered file has its own pid file and
# temporary paths next to it; the access log goes to stdout, the error log to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TEMPLATES=$ROOT/deploy/nginx

log() { printf '[edge] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# /usr/sbin is not on every user's PATH.
nginx_bin() { command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true; }

install() {
  [ -n "$(nginx_bin)" ] && return 0
  log "installing nginx (Debian package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends nginx >/dev/null
  # Only the binary is wanted: the system service the package may have started is not ours.
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    as_root systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
}

check_value() { # NAME VALUE REGEX: refuse a setting that could change the file's syntax
  if ! [[ $2 =~ $3 ]]; then
    log "$1='$2' is not valid"
    exit 2
  fi
}

# EDGE_TRUSTED_PROXIES as nginx realip directives (http context), or a comment when empty.
# Each entry must be an IPv4 or IPv6 address, optionally /prefix: nothing else reaches the file.
real_ip() {
  local entry entries=() lines=()
  IFS=',' read -r -d '' -a entries <<<"$1" || true # the whole value, not its first line
  for entry in "${entries[@]}"; do
    entry=${entry#"${entry%%[![:space:]]*}"} # without the spaces around it
    entry=${entry%"${entry##*[![:space:]]}"}
    [ -z "$entry" ] && continue
    check_value EDGE_TRUSTED_PROXIES "$entry" \
      '^(([0-9]{1,3}\.){3}[0-9]{1,3}(/[0-9]{1,2})?|[0-9A-Fa-f]*:[0-9A-Fa-f:.]*(/[0-9]{1,3})?)$'
    lines+=("set_real_ip_from $entry;")
  done
  if [ ${#lines[@]} -eq 0 ]; then
    lines=("# EDGE_TRUSTED_PROXIES is empty: the edge is the first hop, its peer the client.")
  else
    lines=("# EDGE_TRUSTED_PROXIES: from these peers the client is X-Forwarded-For's last"
      "# address not among them (realip): \$remote_addr is that client from here on."
      "${lines[@]}" "real_ip_header X-Forwarded-For;" "real_ip_recursive on;")
  fi
  printf '    %s\n' "${lines[@]}" # indented like the http block it is written in
}

# Replace each ${NAME} of the given names in the text with that variable's value.
substitute() {
  local text=$1 name
  shift
  for name in "$@"; do
    text=${text//"\${$name}"/"${!name}"}
  done
  if [[ $text =~ \$\{[A-Z_]+\} ]]; then
    log "unrendered setting ${BASH_REMATCH[0]} left in the template"
    exit 2
  fi
  printf '%s\n' "$text"
}

render() {
  local output=${1:-$ROOT/var/edge/nginx.conf}
  local max_mb=${MAX_FILE_SIZE:-100}
  check_value MAX_FILE_SIZE "$max_mb" '^[0-9]+$'
  [ "$max_mb" -lt 16 ] && max_mb=16 # the gateway's own JSON body limit is 16 MB
  local address='^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:[0-9]+)?$'
  EDGE_BIND=${EDGE_BIND:-127.0.0.1:8080}
  GATEWAY_UPSTREAM=${GATEWAY_UPSTREAM:-${GATEWAY_BIND:-127.0.0.1:8083}}
  STATS_UPSTREAM=${STATS_UPSTREAM:-${STATS_BIND:-127.0.0.1:8082}}
  EDGE_MAX_BODY_SIZE=${EDGE_MAX_BODY_SIZE:-$((max_mb + 1))m}
  EDGE_WORKERS=${EDGE_WORKERS:-2}
  check_value EDGE_BIND "$EDGE_BIND" "$address"
  check_value GATEWAY_UPSTREAM "$GATEWAY_UPSTREAM" "$address"
  check_value STATS_UPSTREAM "$STATS_UPSTREAM" "$address"
  check_value EDGE_MAX_BODY_SIZE "$EDGE_MAX_BODY_SIZE" '^[0-9]+[kKmMgG]?$'
  check_value EDGE_WORKERS "$EDGE_WORKERS" '^([0-9]+|auto)$'
  EDGE_REAL_IP=$(real_ip "${EDGE_TRUSTED_PROXIES:-}")
  mkdir -p "$(dirname "$output")"
  EDGE_DIR=$(cd "$(dirname "$output")" && pwd)
  mkdir -p "$EDGE_DIR/tmp"
  local site main
  site=$(substitute "$(<"$TEMPLATES/jobgate.conf.template")" \
    EDGE_BIND GATEWAY_UPSTREAM STATS_UPSTREAM EDGE_MAX_BODY_SIZE)
  EDGE_SITE=$site
  main=$(substitute "$(<"$TEMPLATES/nginx.conf.template")" \
    EDGE_WORKERS EDGE_DIR EDGE_REAL_IP EDGE_SITE)
  printf '%s\n' "$main" >"$output.tmp"
  mv "$output.tmp" "$output"
  log "rendered $output: $EDGE_BIND -> gateway $GATEWAY_UPSTREAM, stats-service $STATS_UPSTREAM"
  [ -n "${EDGE_TRUSTED_PROXIES:-}" ] && log "client addresses from: $EDGE_TRUSTED_PROXIES (realip)"
  return 0
}

serve() {
  install
  local nginx conf=${EDGE_CONF:-$ROOT/var/edge/nginx.conf}
  nginx=$(nginx_bin)
  render "$conf"
  local dir
  dir=$(cd "$(dirname "$conf")" && pwd)
  "$nginx" -t -q -e stderr -p "$dir/" -c "$conf"
  log "listening on http://$EDGE_BIND"
  exec "$nginx" -e stderr -p "$dir/" -c "$conf" -g 'daemon off;'
}

case "${1:-}" in
  install) install ;;
  render) shift; render "$@" ;;
  serve) serve ;;
  *) echo "usage: $0 install|render [OUTPUT]|serve" >&2; exit 2 ;;
esac
