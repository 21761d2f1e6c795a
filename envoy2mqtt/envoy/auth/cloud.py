"""The Enphase cloud flow that turns Enlighten credentials into an Envoy token (envoy-local-api.md §2.3).

1. `POST login.json` (form `user[email]`, `user[password]`) -> JSON with `session_id`
   (missing when multi-factor authentication is on for the account);
2. `POST tokens` (JSON `session_id`, `serial_num`, `username`) -> the raw JWT as text.

This session always verifies certificates (system CAs, plus `ca_file` when configured). Messages never
contain the password, the session id or the token.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import aiohttp
import structlog

from envoy2mqtt.config import CloudSettings
from envoy2mqtt.errors import MfaRequired, TokenRefreshError

log = structlog.get_logger(__name__)

MFA_MESSAGE = (
    "Enlighten login returned no session: multi-factor authentication (MFA) is enabled for this "
    "Enlighten account. Disable MFA for the account envoy2mqtt uses (or create a separate account "
    "without MFA), or paste a token generated at https://entrez.enphaseenergy.com into envoy.token"
)


def cloud_ssl_context(settings: CloudSettings) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if settings.ca_file is not None:
        context.load_verify_locations(cafile=str(settings.ca_file))
    return context


def _says_bad_credentials(document: dict[str, Any]) -> bool:
    """Wrong credentials sometimes come back as HTTP 200 with a message instead of a session."""
    text = " ".join(str(document.get(key, "")) for key in ("message", "error", "errors")).lower()
    if any(word in text for word in ("mfa", "otp", "factor", "verification code")):
        return False
    return any(word in text for word in ("invalid", "incorrect", "wrong", "fail", "denied"))


class CloudClient:
    """One verified aiohttp session towards Enlighten / Entrez, created on first use."""

    def __init__(self, settings: CloudSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=cloud_ssl_context(self.settings)),
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> CloudClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _login(self, username: str, password: str) -> str:
        session = self._get_session()
        try:
            async with session.post(
                self.settings.login_url,
                data={"user[email]": username, "user[password]": password},
                allow_redirects=False,
            ) as response:
                status = response.status
                body = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TokenRefreshError(
                f"Enlighten login: the Enphase cloud is unreachable ({type(exc).__name__})"
            ) from None
        if status in (401, 403):
            raise TokenRefreshError(
                f"Enlighten login refused (HTTP {status}): check envoy.enlighten_username and "
                "envoy.enlighten_password"
            )
        if status != 200:
            raise TokenRefreshError(f"Enlighten login failed with HTTP {status}")
        try:
            document: Any = json.loads(body)
        except ValueError:
            raise TokenRefreshError("Enlighten login answered something that is not JSON") from None
        if not isinstance(document, dict):
            raise TokenRefreshError("Enlighten login answered an unexpected JSON document")
        session_id = document.get("session_id")
        if not session_id or not isinstance(session_id, str | int):
            if _says_bad_credentials(document):
                raise TokenRefreshError(
                    "Enlighten login refused: check envoy.enlighten_username and envoy.enlighten_password"
                )
            # No session and no complaint about the credentials: MFA (pyenphase reads it the same way).
            raise MfaRequired(MFA_MESSAGE)
        return str(session_id)

    async def _request_token(self, session_id: str, serial: str, username: str) -> str:
        session = self._get_session()
        try:
            async with session.post(
                self.settings.token_url,
                json={"session_id": session_id, "serial_num": serial, "username": username},
                allow_redirects=False,
            ) as response:
                status = response.status
                body = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TokenRefreshError(
                f"Entrez token request: the Enphase cloud is unreachable ({type(exc).__name__})"
            ) from None
        if status != 200:
            raise TokenRefreshError(f"Entrez refused the token request for serial {serial} (HTTP {status})")
        return body.strip()

    async def fetch_token(self, username: str, password: str, serial: str) -> str:
        """A new token for `serial`; the caller checks that it is a well-formed JWT for this Envoy."""
        session_id = await self._login(username, password)
        token = await self._request_token(session_id, serial, username)
        log.info("cloud_token_received", serial=serial, length=len(token))
        return token
