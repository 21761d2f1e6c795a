# envoy2mqtt container image: multi-stage, non-root, architecture-neutral (nothing below downloads a
# binary for one CPU; pip picks the wheels of the platform it builds on, so buildx builds every arch).
# Plain `docker build` works: no BuildKit-only syntax, no `# syntax=` frontend to pull.
#
#   docker build -t envoy2mqtt .
#   docker run -d -v ./config:/config:ro -v envoy2mqtt-data:/data envoy2mqtt
#
# Build arguments:
#   PYTHON_IMAGE  the base of both stages (default: the official slim Python image). Any Debian-like
#                 image with python3 and its venv module works; scripts/container-test builds one with
#                 mmdebstrap where Docker Hub cannot be reached.
#   EXTRAS        optional extras of the package, e.g. "simulator" for the compose demo's simulated
#                 Envoy (adds cryptography). The default image holds the daemon's dependencies only.
#
# Configuration: /config/config.toml when that file exists, and/or ENVOY2MQTT_* environment
# variables (they override the file), e.g. ENVOY2MQTT_MQTT__HOST=broker and
# ENVOY2MQTT_ENVOY='[{"host": "192.168.1.50", "token": "eyJ..."}]'. State (tokens, counter
# baselines) lives in the /data volume.

ARG PYTHON_IMAGE=python:3.12.12-slim-bookworm

# ---- builder: the virtual environment, complete, then stripped of the installer itself ------------
FROM ${PYTHON_IMAGE} AS builder

ARG EXTRAS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# README*/LICENSE* are globs so the build works whether or not those files exist yet
COPY pyproject.toml README* LICENSE* ./
COPY envoy2mqtt/ envoy2mqtt/
# pip (and setuptools, where the base's venv module still adds it) only build the environment: they are
# uninstalled before it is copied, so the runtime holds the daemon and its dependencies and nothing else.
RUN python3 -m venv /opt/envoy2mqtt \
 && /opt/envoy2mqtt/bin/python -m pip install --no-cache-dir ".${EXTRAS:+[${EXTRAS}]}" \
 && /opt/envoy2mqtt/bin/python -m pip uninstall --yes pip setuptools wheel \
 && /opt/envoy2mqtt/bin/envoy2mqtt --version

# ---- runtime: the base image, an unprivileged user and the builder's environment -------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG PYTHON_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="envoy2mqtt" \
      org.opencontainers.image.description="Enphase Envoy / IQ Gateway to MQTT bridge with Home Assistant discovery" \
      org.opencontainers.image.source="https://github.com/envoy2mqtt/envoy2mqtt" \
      org.opencontainers.image.url="https://github.com/envoy2mqtt/envoy2mqtt" \
      org.opencontainers.image.documentation="https://github.com/envoy2mqtt/envoy2mqtt#readme" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# fixed uid/gid so a bind-mounted /data or /config can be chowned once on the host. The base image's own
# pip goes too: nothing installs anything at run time (its bytes stay in the shared base layer).
RUN groupadd --system --gid 10001 envoy2mqtt \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin envoy2mqtt \
 && mkdir -p /config /data \
 && chown 10001:10001 /data \
 && chmod 0700 /data \
 && rm -rf /usr/local/bin/pip /usr/local/bin/pip3* /usr/local/lib/python3*/site-packages/pip \
        /usr/local/lib/python3*/site-packages/pip-*

COPY --from=builder /opt/envoy2mqtt /opt/envoy2mqtt

ENV PATH=/opt/envoy2mqtt/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENVOY2MQTT_STATE_DIR=/data \
    ENVOY2MQTT_HEALTH__ENABLED=true \
    ENVOY2MQTT_HEALTH__HOST=0.0.0.0 \
    ENVOY2MQTT_HEALTH__PORT=8080

VOLUME ["/data"]
WORKDIR /data
EXPOSE 8080
USER 10001:10001

# liveness only: an Envoy that is offline at night must not make the container "unhealthy"
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('ENVOY2MQTT_HEALTH__PORT', '8080'); urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# /config/config.toml is used only when it exists (and ENVOY2MQTT_CONFIG is not set already), so the
# container also runs configured by environment alone. exec: envoy2mqtt is PID 1 and gets SIGTERM.
ENTRYPOINT ["/bin/sh", "-c", "if [ -z \"${ENVOY2MQTT_CONFIG:-}\" ] && [ -f /config/config.toml ]; then export ENVOY2MQTT_CONFIG=/config/config.toml; fi; exec envoy2mqtt \"$@\"", "envoy2mqtt"]
CMD ["run"]
