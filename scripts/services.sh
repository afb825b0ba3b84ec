#!/usr/bin/env bash
# Start PostgreSQL, RabbitMQ and Redis when they are installed but not running, then make
# sure the `jobgate` role and database exist. Idempotent: a no-op when all is up.
set -euo pipefail

log() { printf '[services] %s\n' "$*"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 1; done
  log "$2 did not open port $1 within 60 s"; return 1
}

if ! port_open 5432; then
  command -v pg_ctlcluster >/dev/null || { log "PostgreSQL is not installed (apt-get install postgresql)"; exit 1; }
  log "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
  wait_port 5432 PostgreSQL
fi

if ! port_open 5672; then
  command -v rabbitmq-server >/dev/null || { log "RabbitMQ is not installed (apt-get install rabbitmq-server)"; exit 1; }
  log "starting RabbitMQ"
  as_root rabbitmq-server -detached
  wait_port 5672 RabbitMQ
  as_root rabbitmqctl -q await_startup >/dev/null 2>&1 || true
fi

# The management console (http://127.0.0.1:15672) is where operators watch and requeue, and
# the dashboard reads queue depths from its API. The plugin ships with the server.
if command -v rabbitmq-plugins >/dev/null && ! port_open 15672; then
  log "enabling the RabbitMQ management plugin"
  as_root rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null || log "could not enable rabbitmq_management"
  wait_port 15672 "RabbitMQ management" || true
fi

if ! port_open 6379; then
  if command -v redis-server >/dev/null; then
    log "starting Redis"
    as_root mkdir -p /var/lib/redis /var/log/redis
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_port 6379 Redis
  else
    log "Redis is not installed; rate limits stay per process (memory://)"
  fi
fi

PSQL=(psql -h 127.0.0.1 -U "${PGADMIN_USER:-postgres}" -d postgres -v ON_ERROR_STOP=1 -qtA)
if [ "$("${PSQL[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'jobgate'")" != 1 ]; then
  log "creating role jobgate"
  "${PSQL[@]}" -c "CREATE ROLE jobgate LOGIN PASSWORD 'jobgate' CREATEDB"
fi
if [ "$("${PSQL[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'jobgate'")" != 1 ]; then
  log "creating database jobgate"
  "${PSQL[@]}" -c "CREATE DATABASE jobgate OWNER jobgate"
fi
