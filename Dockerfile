# syntax=docker/dockerfile:1
# envoy2mqtt container image: multi-stage, non-root, architecture-neutral (nothing below downloads a
# binary for one CPU; pip picks the wheels of the platform it builds on, so buildx builds every arch).
#
#   docker build -t envoy2mqtt .
#   docker run -d -v ./config:/config:ro -v envoy2mqtt-data:/data envoy2mqtt
#
# Configuration: /config/config.toml when that file exists, and/or ENVOY2MQTT_* environment
# variables (they override the file), e.g. ENVOY2MQTT_MQTT__HOST=broker and
# ENVOY2MQTT_ENVOY='[{"host": "192.168.1.50", "token": "eyJ..."}]'. State (tokens, counter
# baselines) lives in the /data volume.

# ---- builder: one wheel for the project plus wheels for every dependency ------------------------
FROM python:3.12.12-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# README*/LICENSE* are globs so the build works whether or not those files exist yet
COPY pyproject.toml README* LICENSE* ./
COPY envoy2mqtt/ envoy2mqtt/
RUN python -m pip wheel --wheel-dir /wheels .

# ---- runtime: installs the wheels into a virtual environment, runs as an unprivileged user ---------
FROM python:3.12.12-slim-bookworm AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="envoy2mqtt" \
      org.opencontainers.image.description="Enphase Envoy / IQ Gateway to MQTT bridge with Home Assistant discovery" \
      org.opencontainers.image.source="https://github.com/envoy2mqtt/envoy2mqtt" \
      org.opencontainers.image.url="https://github.com/envoy2mqtt/envoy2mqtt" \
      org.opencontainers.image.documentation="https://github.com/envoy2mqtt/envoy2mqtt#readme" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="docker.io/library/python:3.12.12-slim-bookworm"

# fixed uid/gid so a bind-mounted /data or /config can be chowned once on the host
RUN groupadd --system --gid 10001 envoy2mqtt \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin envoy2mqtt \
 && mkdir -p /config /data \
 && chown 10001:10001 /data \
 && chmod 0700 /data

# the wheels are bind-mounted from the builder, so they never become a layer of this image
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/envoy2mqtt \
 && /opt/envoy2mqtt/bin/pip install --no-cache-dir --disable-pip-version-check \
        --no-index --find-links=/wheels envoy2mqtt \
 && /opt/envoy2mqtt/bin/envoy2mqtt --version

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
