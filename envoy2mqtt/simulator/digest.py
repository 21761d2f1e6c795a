"""Server side of HTTP Digest (RFC 7616 subset: MD5, qop=auth), as legacy Envoys (firmware < 7) speak it."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]+))')
_MAX_NONCES = 4096


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - Digest auth is defined on MD5


def parse_digest_header(header: str) -> dict[str, str] | None:
    """`Digest username="envoy", ...` -> {"username": "envoy", ...}; None when not a Digest header."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        quoted, bare = match.group(2), match.group(3)
        value = quoted.replace('\\"', '"') if quoted is not None else bare
        params[match.group(1).lower()] = value
    return params


class DigestVerifier:
    """Issues challenges and checks answers against a fixed table of users and passwords."""

    def __init__(self, realm: str, credentials: Mapping[str, str]) -> None:
        self.realm = realm
        self._credentials = dict(credentials)
        self._opaque = secrets.token_hex(16)
        self._nonces: OrderedDict[str, None] = OrderedDict()  # issued nonces, oldest first

    def challenge(self) -> str:
        nonce = secrets.token_hex(16)
        self._nonces[nonce] = None
        while len(self._nonces) > _MAX_NONCES:
            self._nonces.popitem(last=False)
        return (
            f'Digest realm="{self.realm}", qop="auth", algorithm=MD5, '
            f'nonce="{nonce}", opaque="{self._opaque}"'
        )

    def verify(self, method: str, request_uri: str, header: str | None) -> str | None:
        """The authenticated user name, or None when the header is absent, stale or wrong."""
        if not header:
            return None
        params = parse_digest_header(header)
        if params is None:
            return None
        user = params.get("username", "")
        password = self._credentials.get(user)
        nonce = params.get("nonce", "")
        uri = params.get("uri", "")
        answer = params.get("response", "")
        if password is None or nonce not in self._nonces or params.get("realm") != self.realm:
            return None
        if params.get("algorithm", "MD5").upper() != "MD5":
            return None
        # The uri in the header must name the resource actually requested.
        if uri.split("?")[0] != request_uri.split("?")[0]:
            return None
        ha1 = _md5(f"{user}:{self.realm}:{password}")
        ha2 = _md5(f"{method}:{uri}")
        qop = params.get("qop")
        if qop is None:
            expected = _md5(f"{ha1}:{nonce}:{ha2}")
        elif qop == "auth":
            # nc is not checked for order: concurrent clients may legitimately send them out of order.
            nc_text = params.get("nc", "")
            expected = _md5(f"{ha1}:{nonce}:{nc_text}:{params.get('cnonce', '')}:{qop}:{ha2}")
        else:
            return None
        return user if hmac.compare_digest(expected, answer) else None
