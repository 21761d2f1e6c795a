"""What the bridge publishes about authentication: never the token itself."""

from __future__ import annotations

from dataclasses import dataclass

from envoy2mqtt.model import AuthMode, TokenType


@dataclass(frozen=True, slots=True)
class AuthStatus:
    """Authentication state of one Envoy, for the `gateway` topic and `envoy2mqtt check`."""

    mode: AuthMode | None = None
    token_type: TokenType | None = None
    token_expires_at: float | None = None  # epoch seconds
    ok: bool = False
    reason: str | None = None  # short human reason when not ok (or a warning, e.g. token expiring)
