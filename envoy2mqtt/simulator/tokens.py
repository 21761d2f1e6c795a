"""JWTs the way Entrez issues them, verified the way a token-firmware Envoy does, plus `sessionId` cookies."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import jwt

from envoy2mqtt.clock import Clock

SESSION_IDLE_SECONDS = 600.0
_ALGORITHM = "HS256"
_MAX_SESSIONS = 10_000


class TokenAuthority:
    """Signs tokens with a per-simulator secret; the fake cloud and the Envoy share one authority."""

    def __init__(self, serial: str, clock: Clock) -> None:
        self.serial = serial
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._sessions: dict[str, float] = {}  # sessionId -> wall time of last use
        self._session_types: dict[str, str] = {}  # sessionId -> the token type that opened it

    def issue(
        self,
        token_type: str = "owner",
        lifetime: float = 365 * 86400,
        serial: str | None = None,
        username: str = "user@example.com",
    ) -> str:
        now = int(self._clock.time())
        claims: dict[str, Any] = {
            "aud": serial if serial is not None else self.serial,
            "iss": "Entrez",
            "enphaseUser": token_type,
            "exp": now + int(lifetime),
            "iat": now,
            "jti": str(uuid.uuid4()),
            "username": username,
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def validate(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this simulator signed for this Envoy and that has not expired, else None."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                audience=self.serial,
                # expiry is judged on the simulator's clock (tests move it), not on time.time()
                options={"verify_exp": False, "verify_iat": False, "require": ["exp", "aud"]},
            )
        except jwt.InvalidTokenError:
            return None
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self._clock.time():
            return None
        return claims

    def open_session(self, token_type: str = "owner") -> str:
        now = self._clock.time()
        if len(self._sessions) >= _MAX_SESSIONS:
            self._sessions = {
                sid: used for sid, used in self._sessions.items() if now - used < SESSION_IDLE_SECONDS
            }
            self._session_types = {
                sid: kind for sid, kind in self._session_types.items() if sid in self._sessions
            }
        session_id = secrets.token_hex(16)
        self._sessions[session_id] = now
        self._session_types[session_id] = token_type
        return session_id

    def session_type(self, session_id: str | None) -> str:
        """The token type (owner or installer) of the token that opened this session."""
        return self._session_types.get(session_id or "", "owner")

    def use_session(self, session_id: str | None) -> bool:
        """True (and the idle timer restarts) when the session was used within the last 10 minutes."""
        if not session_id:
            return False
        last = self._sessions.get(session_id)
        now = self._clock.time()
        if last is None or now - last >= SESSION_IDLE_SECONDS:
            self._sessions.pop(session_id, None)
            return False
        self._sessions[session_id] = now
        return True
