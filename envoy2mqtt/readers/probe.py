"""Feature detection: read every probe endpoint once, decide what this Envoy can measure.

The client only talks HTTP: `EnvoyClient.probe_body(path)` reads a path without re-authenticating on a
401 (`EnvoyPathRefused`: the endpoint is absent for these credentials). This module decides which
answers mean "absent" (401, 404, HTML, `{"error": ...}`, a persistent 5xx), falls back to the HTML
production page of firmware before 3.9, and hands the bodies to the pure `normalize.features.detect_features`.
The bodies are kept: the planner holds them for the readers that reuse the probe's body (the CT list).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from envoy2mqtt.envoy import endpoints
from envoy2mqtt.errors import BadEnvoyData, EnvoyError, EnvoyHttpError, EnvoyPathRefused
from envoy2mqtt.model import EnvoyInfo, Features
from envoy2mqtt.normalize.features import detect_features, usable_body

log = structlog.get_logger(__name__)


class ProbeClient(Protocol):
    @property
    def info(self) -> EnvoyInfo | None: ...

    async def probe_body(self, path: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Probe:
    features: Features
    bodies: Mapping[str, Any] = field(default_factory=dict)  # path -> body, only the paths that answered


async def probe(client: ProbeClient, *, label: str = "") -> Probe:
    """Read every probe endpoint once; 401/404/HTML/{"error"} mean absent."""
    info = client.info
    if info is None:
        raise EnvoyError(f"{label}: connect() first")
    bodies: dict[str, Any] = {}
    for path in endpoints.PROBE_ENDPOINTS:
        try:
            bodies[path] = await client.probe_body(path)
        except (EnvoyPathRefused, EnvoyHttpError, BadEnvoyData) as exc:
            # EnvoyNotFound is an EnvoyHttpError. A persistent 5xx also means "not usable here".
            log.debug("probe_endpoint_absent", envoy=label, path=path, reason=str(exc))
    if not any(usable_body(p, bodies.get(p)) for p in endpoints.JSON_PRODUCTION_ENDPOINTS):
        # Firmware before 3.9: no JSON production at all, only the HTML page.
        try:
            bodies[endpoints.PRODUCTION_HTML] = await client.probe_body(endpoints.PRODUCTION_HTML)
        except (EnvoyPathRefused, EnvoyHttpError, BadEnvoyData) as exc:
            log.debug("probe_endpoint_absent", envoy=label, path=endpoints.PRODUCTION_HTML, reason=str(exc))
    features = detect_features(info, bodies)
    log.info("envoy_probed", envoy=label, endpoints=sorted(bodies))
    return Probe(features, bodies)
