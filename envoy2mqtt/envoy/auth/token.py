"""JWT tokens of firmware 7+: decoding the claims we rely on, without verifying the signature.

The Envoy verifies the signature (`/auth/check_jwt`); we only read `exp`, `iat`, `enphaseUser` and `aud`
to know when to refresh and to catch a token made for another Envoy. Error messages never contain
the token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jwt

from envoy2mqtt.errors import TokenRejected
from envoy2mqtt.model import TokenType

# header.payload.signature, each base64url; Entrez tokens start with `eyJ` (`{"` encoded).
_JWT_SHAPE = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


@dataclass(frozen=True, slots=True)
class TokenClaims:
    expires_at: float  # `exp`, epoch seconds
    issued_at: float | None  # `iat`
    token_type: TokenType | None  # `enphaseUser`: owner or installer
    audience: str | None  # `aud`: the serial of the Envoy the token is for

    def remaining(self, now: float) -> float:
        return self.expires_at - now

    def expired(self, now: float) -> bool:
        return self.expires_at <= now

    def as_json(self) -> dict[str, Any]:
        return {
            "exp": self.expires_at,
            "iat": self.issued_at,
            "enphaseUser": self.token_type,
            "aud": self.audience,
        }


def looks_like_jwt(text: str) -> bool:
    return bool(_JWT_SHAPE.match(text.strip()))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def decode_token(token: str) -> TokenClaims:
    """Claims of a well-formed JWT; TokenRejected for anything else (never quoting the token)."""
    text = token.strip()
    if not looks_like_jwt(text):
        raise TokenRejected(f"not a well-formed JWT ({len(text)} characters that are not header.payload.sig)")
    try:
        payload = jwt.decode(
            text,
            options={"verify_signature": False, "verify_exp": False, "verify_aud": False},
            algorithms=["ES256", "RS256", "HS256"],
        )
    except jwt.PyJWTError as exc:
        raise TokenRejected(f"not a well-formed JWT ({type(exc).__name__})") from None
    if not isinstance(payload, dict):
        raise TokenRejected("not a well-formed JWT (the payload is not an object)")
    expires_at = _number(payload.get("exp"))
    if expires_at is None:
        raise TokenRejected("the token has no expiry (`exp` claim)")
    user = payload.get("enphaseUser")
    token_type: TokenType | None = user if user in ("owner", "installer") else None
    audience = payload.get("aud")
    if isinstance(audience, list):
        audience = audience[0] if audience else None
    return TokenClaims(
        expires_at=expires_at,
        issued_at=_number(payload.get("iat")),
        token_type=token_type,
        audience=str(audience) if audience is not None else None,
    )


def check_audience(claims: TokenClaims, serial: str) -> None:
    """A token is only accepted by the Envoy whose serial is its `aud` (serials are not secrets)."""
    if claims.audience is not None and claims.audience != serial:
        raise TokenRejected(
            f"the token is for Envoy serial {claims.audience}, but this Envoy's serial is {serial}: "
            "generate a token for this Envoy (or fix envoy.serial)"
        )
