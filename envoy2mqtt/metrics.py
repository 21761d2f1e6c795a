"""Prometheus metrics of the bridge, in a registry of their own (never a process-global one).

A private registry keeps two bridges in one process (tests) from colliding. The classes come from
`promtext` (the text format, written here) rather than prometheus-client, which the daemon does not load.
"""

from __future__ import annotations

from typing import Final

from .errors import BadEnvoyData, EnvoyAuthError, EnvoyHttpError, EnvoyUnreachable, TokenError
from .promtext import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "ERROR_KINDS", "Metrics", "error_kind"]

# generate_latest writes the classic text format
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
ERROR_KINDS: Final = ("unreachable", "auth", "bad_data", "http", "other")

# An Envoy answers in tens of milliseconds when idle and takes tens of seconds for device_data
# at minutes :01-:03 of the hour; the buckets cover both ends.
_POLL_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, float("inf"))


def error_kind(exc: BaseException) -> str:
    """The ``kind`` label for a failed poll: unreachable, auth, bad_data, http or other."""
    if isinstance(exc, EnvoyUnreachable):
        return "unreachable"
    if isinstance(exc, EnvoyAuthError | TokenError):
        return "auth"
    if isinstance(exc, BadEnvoyData):
        return "bad_data"
    if isinstance(exc, EnvoyHttpError):
        return "http"
    return "other"


class Metrics:
    """Every metric the bridge exports. Callers update them directly (``.labels(...).inc()``)."""

    def __init__(self, namespace: str = "envoy2mqtt") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.poll_duration = Histogram(
            "poll_duration_seconds",
            "Duration of one request to an Envoy endpoint",
            ["envoy", "endpoint"],
            namespace=namespace,
            buckets=_POLL_BUCKETS,
            registry=self.registry,
        )
        self.poll_errors = Counter(
            "poll_errors",
            "Failed polls, by kind: unreachable, auth, bad_data, http, other",
            ["envoy", "kind"],
            namespace=namespace,
            registry=self.registry,
        )
        self.token_expiry_seconds = Gauge(
            "token_expiry_seconds",
            "Seconds until the Envoy's access token expires (negative once expired)",
            ["envoy"],
            namespace=namespace,
            registry=self.registry,
        )
        self.messages_published = Counter(
            "messages_published",
            "MQTT messages handed to the broker",
            namespace=namespace,
            registry=self.registry,
        )
        self.mqtt_reconnects = Counter(
            "mqtt_reconnects",
            "Reconnections to the MQTT broker after a lost connection",
            namespace=namespace,
            registry=self.registry,
        )
        self.last_successful_poll = Gauge(
            "last_successful_poll_timestamp_seconds",
            "Unix time of the last successful poll, by Envoy and cadence",
            ["envoy", "cadence"],
            namespace=namespace,
            registry=self.registry,
        )
        self.realtime_interval = Gauge(
            "realtime_interval_seconds",
            "Effective interval of the real-time cadence (the configured one, more while backed off)",
            ["envoy"],
            namespace=namespace,
            registry=self.registry,
        )
        self.realtime_reads = Counter(
            "realtime_reads",
            "Real-time requests to an Envoy, by result: ok, failed",
            ["envoy", "result"],
            namespace=namespace,
            registry=self.registry,
        )

        self._published_seen = 0

    def sync_published(self, total: int) -> None:
        """Bring ``messages_published`` up to the publisher's own running count.

        A count lower than the last one seen means the publisher started again from zero: its
        whole count is new.
        """
        delta = total - self._published_seen if total >= self._published_seen else total
        if delta > 0:
            self.messages_published.inc(delta)
        self._published_seen = total

    def record_error(self, envoy: str, kind: str) -> None:
        """Count one failed poll; an unknown kind is counted as ``other``."""
        self.poll_errors.labels(envoy=envoy, kind=kind if kind in ERROR_KINDS else "other").inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format (version 0.0.4)."""
        return bytes(generate_latest(self.registry))
