# Jobgate's Python base image for machines that reach no container registry: Debian's own
# python3 (3.11 in bookworm) with venv and the CA certificates, on the Debian image that
# `scripts/images.sh base` makes with debootstrap from the machine's apt mirror:
#   podman build --format docker --build-arg BASE_IMAGE=localhost/jobgate/debian-base:bookworm \
#     -f deploy/images/python-base.Dockerfile -t localhost/jobgate/python-base:3.11 deploy/images
# Where a registry is reachable the service images use python:3.11-slim instead (their
# default BASE_IMAGE); both give `python` on PATH, which the Dockerfiles rely on.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# The optional build secrets carry this machine's apt settings (e.g. the CA of a
# TLS-inspecting proxy for an https mirror); they never land in a layer.
RUN --mount=type=secret,id=apt.conf,target=/etc/apt/apt.conf.d/99jobgate-build \
    --mount=type=secret,id=build-ca \
    apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv python-is-python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

ENV LANG=C.UTF-8
CMD ["python"]
