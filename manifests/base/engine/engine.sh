#!/bin/sh
# The container workers' engine in Kubernetes: rootful Podman serving the Docker Engine API
# on a socket in the pod's shared emptyDir (/run/jobgate-engine), which only the worker
# container of this pod mounts. Run as the native sidecar of workers/container.yaml.
#
# No registry is assumed (the worker never pulls): image archives made with `podman save`
# or `docker save` and copied into the storage volume's engine-images/ folder are loaded at
# start. Names in the archive are kept; the Docker API completes short names to docker.io,
# so save images under their full name (`docker.io/library/busybox`, not `localhost/...`).
set -eu
dir=/run/jobgate-engine
sock="$dir/podman.sock"
rm -f "$sock" "$dir/ready"

for archive in /var/lib/jobgate/storage/engine-images/*.tar; do
  [ -e "$archive" ] || continue
  podman load --quiet --input "$archive" || echo "engine: could not load $archive" >&2
done

cd "$dir"  # conmon leaves files in its working directory
podman system service --time=0 "unix://$sock" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT

while [ ! -S "$sock" ]; do
  kill -0 "$pid" 2>/dev/null || exit 1
  sleep 0.2
done
# The worker runs as uid/gid 10001: the socket is its group's, nobody else's.
chgrp "${ENGINE_SOCKET_GID:-10001}" "$sock"
chmod 0660 "$sock"
touch "$dir/ready"  # the sidecar's startupProbe: the worker starts after this
wait "$pid"
