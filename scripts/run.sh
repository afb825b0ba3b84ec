#!/usr/bin/env bash
# `make run`: the whole stack in one terminal with prefixed logs (honcho); Ctrl-C stops it all.
# Local-only settings live in var/dev.env, created on first run with a random admin password.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var/keys var/prometheus

if [ ! -f var/dev.env ]; then
  password=$(.venv/bin/python -c "import secrets; print(secrets.token_urlsafe(12))")
  cat > var/dev.env <<ENV
# Written by make run for local use only; delete it to start over.
JOBGATE_ENV=development
BOOTSTRAP_ADMIN_USERNAME=admin
BOOTSTRAP_ADMIN_PASSWORD=$password
# Seed 000's demo key, for local use only (never in production manifests).
BOOTSTRAP_API_KEY=demo-api-key-2024
RATE_LIMIT_STORAGE_URI=redis://127.0.0.1:6379/0
CACHE_ROOT=$PWD/var/filespace
STORAGE_DIR=$PWD/var/storage
LOG_FORMAT=text
ENV
  chmod 600 var/dev.env
fi
. scripts/load-env.sh var/dev.env  # what you export wins over the file
export PATH="$PWD/.venv/bin:$PATH"
# Container jobs use the engine Procfile's `engine` serves, unless you export another one
# (e.g. DOCKER_HOST=unix:///var/run/docker.sock for Docker).
export DOCKER_HOST="${DOCKER_HOST:-unix://$PWD/var/podman/podman.sock}"
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then export RATE_LIMIT_STORAGE_URI=memory://; fi
rm -rf var/prometheus/* && export PROMETHEUS_MULTIPROC_DIR=$PWD/var/prometheus

# The demo files go only into the project's own filespace, never into one the user named.
if [ "$CACHE_ROOT" = "$PWD/var/filespace" ]; then scripts/demo-filespace.sh "$CACHE_ROOT"; fi

edge=${EDGE_BIND:-127.0.0.1:8080}
case $edge in *:*) ;; *) edge=localhost:$edge ;; esac # a bare port: every address
cat <<MSG
Jobgate is starting:
  API          http://$edge   (the edge, nginx; API docs: http://$edge/docs)
  behind it    gateway ${GATEWAY_BIND:-127.0.0.1:8083}, stats-service ${STATS_BIND:-127.0.0.1:8082}, auth-service ${AUTH_BIND:-127.0.0.1:8081}
  admin login  admin / $BOOTSTRAP_ADMIN_PASSWORD
  demo API key demo-api-key-2024        (curl -H "X-API-Key: demo-api-key-2024" ...)
  cache root   $CACHE_ROOT
Ctrl-C stops everything.
MSG
exec .venv/bin/honcho start -f Procfile
