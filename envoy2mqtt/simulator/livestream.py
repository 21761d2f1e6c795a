"""The switch of `/ivp/livedata/status`: its values move only while the stream is enabled.

`POST /ivp/livedata/stream {"enable": 1}` answers `{"sc_stream": "enabled"}` and the stream switches
itself off `expiry` seconds later (about 15 minutes on a real Envoy; tests make it short). While it is
off, the status shows `"sc_stream": "disabled"` and the values frozen at the moment it lapsed.
"""

from __future__ import annotations

import copy
from typing import Any

DEFAULT_EXPIRY = 900.0


class LiveStream:
    def __init__(self, expiry: float = DEFAULT_EXPIRY) -> None:
        if expiry <= 0:
            raise ValueError("the livedata stream expiry must be positive")
        self.expiry = expiry
        self.enabled_until = -1.0
        self.enables = 0  # how often a client switched it on
        self._frozen: dict[str, Any] | None = None

    def enable(self, now: float) -> None:
        self.enables += 1
        self.enabled_until = now + self.expiry
        self._frozen = None

    def enabled(self, now: float) -> bool:
        return now < self.enabled_until

    def status(self, now: float, live_body: dict[str, Any]) -> dict[str, Any]:
        """What the Envoy shows now, given the body the site would show if the stream were on."""
        if self.enabled(now):
            body = copy.deepcopy(live_body)
            self._frozen = copy.deepcopy(live_body)
            state = "enabled"
        else:
            if self._frozen is None:
                self._frozen = copy.deepcopy(live_body)
            body = copy.deepcopy(self._frozen)
            state = "disabled"
        connection = body.setdefault("connection", {})
        connection["sc_stream"] = state
        return body
