"""Keeping `/ivp/livedata/status` live: its values only move while the stream is enabled.

The Envoy switches the stream off by itself after about 15 minutes (docs/envoy-writes-and-realtime.md
§2). The keeper renews it well before that (every `renew_after` seconds) and at once whenever a status
read shows `connection.sc_stream` other than "enabled" (a body read then is frozen: it is not published).
"""

from __future__ import annotations

RENEW_AFTER = 600.0  # seconds: two thirds of the ~15-minute expiry
STREAM_PATH = "/ivp/livedata/stream"
STATUS_PATH = "/ivp/livedata/status"
ENABLE_BODY = {"enable": 1}


class StreamKeeper:
    def __init__(self, renew_after: float = RENEW_AFTER) -> None:
        self.renew_after = renew_after
        self._enabled_at: float | None = None
        self.renewals = 0

    def due(self, now: float) -> bool:
        """Enable (again) before the next status read."""
        return self._enabled_at is None or now - self._enabled_at >= self.renew_after

    def enabled(self, now: float) -> None:
        self._enabled_at = now
        self.renewals += 1

    def observed(self, state: str | None) -> bool:
        """A status read showed `sc_stream = state`; True when its values are live (publishable).

        A body without the key (a firmware that does not report it) is taken as live: the stream was
        switched on before the read and is renewed on schedule."""
        if state in ("enabled", None):
            return True
        self._enabled_at = None  # lapsed (or never on): enable before the next read
        return False
