"""The HTTP client of one Envoy: one aiohttp session, one request in flight, retries, authentication.

Transport rules (envoy-local-api.md §3): `Accept: application/json`, no redirects followed, generous
timeouts (the Envoy is slow to answer but quick to connect), retries with jittered exponential backoff
for connection errors and 5xx only. The Envoy's self-signed certificate is accepted for the Envoy only,
optionally pinned by its SHA-256 fingerprint. HTTP 200 bodies that are HTML, `{"error": ...}` or
truncated JSON raise, they are never returned as data.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from envoy2mqtt.clock import SYSTEM_CLOCK, Clock, iso_utc
from envoy2mqtt.config import CloudSettings, EnvoySettings, TokenSettings
from envoy2mqtt.errors import (
    BadEnvoyData,
    EnvoyAuthError,
    EnvoyError,
    EnvoyHttpError,
    EnvoyNotFound,
    EnvoyPathRefused,
    EnvoyUnreachable,
    EnvoyWriteRefused,
    TokenError,
)
from envoy2mqtt.logging import register_secret
from envoy2mqtt.model import EnvoyInfo
from envoy2mqtt.retry import RetryPolicy

from . import endpoints
from .auth.cloud import CloudClient
from .auth.legacy import INSTALLER_USER, LegacyCredentials, legacy_credentials
from .auth.manager import TokenManager
from .auth.status import AuthStatus
from .auth.store import TokenStore
from .firmware import parse_info
from .queue import RequestQueue

__all__ = ["AuthStatus", "EnvoyClient", "envoy_ssl_context"]

log = structlog.get_logger(__name__)

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=10, sock_read=45)
MAX_ATTEMPTS = 3  # per request: connection errors and 5xx only
RETRY_BASE_DELAY = 1.0
RETRY_MAX_DELAY = 10.0
DEFAULT_FIRMWARE_CHECK_INTERVAL = 4 * 3600.0
# A JSON object with only these keys and an "error" is an error document, not data.
_ERROR_DOCUMENT_KEYS = frozenset({"error", "status", "info", "moreInfo", "message", "code"})


def envoy_ssl_context() -> ssl.SSLContext:
    """The Envoy's certificate is self-signed for a name nobody resolves: accept it, for the Envoy only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT")
    return context


class _PinnedCertificateMismatch(EnvoyUnreachable):
    """Not retried and no http fallback: the configured fingerprint does not match."""


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    content_type: str
    location: str | None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _excerpt(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


class EnvoyClient:
    """Talks to one Envoy. `connect()` first (reads /info, sets up authentication), then read bodies."""

    def __init__(
        self,
        settings: EnvoySettings,
        cloud: CloudSettings,
        token: TokenSettings,
        state_dir: Path,
        clock: Clock = SYSTEM_CLOCK,
        *,
        firmware_check_interval: float = DEFAULT_FIRMWARE_CHECK_INTERVAL,
    ) -> None:
        self.settings = settings
        self.cloud_settings = cloud
        self.token_settings = token
        self.state_dir = Path(state_dir)
        self.clock = clock
        self.firmware_check_interval = firmware_check_interval
        self.info: EnvoyInfo | None = None
        self.token_manager: TokenManager | None = None
        self.base_url: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._cloud: CloudClient | None = None
        self._queue = RequestQueue()
        # Between the attempts of one request (the attempt number is the request's own, not shared).
        self._retry = RetryPolicy(
            initial=RETRY_BASE_DELAY, cap=RETRY_MAX_DELAY, jitter=(0.5, 1.5), clock=clock
        )
        self._legacy: LegacyCredentials | None = None
        self._digest: aiohttp.DigestAuthMiddleware | None = None
        self._legacy_status = AuthStatus()
        self._legacy_refused_paths: set[str] = set()
        self._last_firmware_check: float | None = None
        self._firmware_check_requested = False
        self._firmware_change_pending = False
        self._log = log.bind(envoy=settings.label)

    # ------------------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> EnvoyClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._cloud is not None:
            await self._cloud.close()
            self._cloud = None

    def set_firmware_check_interval(self, seconds: float) -> None:
        self.firmware_check_interval = seconds

    @property
    def auth_status(self) -> AuthStatus:
        if self.token_manager is not None:
            return self.token_manager.status
        return self._legacy_status

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ssl_setting: ssl.SSLContext | aiohttp.Fingerprint
            if self.settings.cert_fingerprint:
                # Fingerprint: no chain or name verification, the SHA-256 of the peer certificate must match.
                ssl_setting = aiohttp.Fingerprint(bytes.fromhex(self.settings.cert_fingerprint))
            else:
                ssl_setting = envoy_ssl_context()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl_setting),
                cookie_jar=aiohttp.CookieJar(unsafe=True),  # Envoys are IP addresses
                headers={"Accept": "application/json"},
                timeout=REQUEST_TIMEOUT,
            )
        return self._session

    # ------------------------------------------------------------------------------ transport

    async def _send_once(
        self,
        url: str,
        headers: Mapping[str, str] | None,
        method: str = "GET",
        body: bytes | None = None,
        time_limit: float | None = None,
    ) -> _Reply:
        session = self._get_session()
        middlewares = (self._digest,) if self._digest is not None else ()
        timeout = aiohttp.ClientTimeout(total=time_limit) if time_limit is not None else REQUEST_TIMEOUT
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                middlewares=middlewares,
                timeout=timeout,
            ) as response:
                body = await response.read()
                return _Reply(
                    status=response.status,
                    body=body,
                    content_type=response.content_type,
                    location=response.headers.get("Location"),
                )
        except aiohttp.ServerFingerprintMismatch as exc:
            raise _PinnedCertificateMismatch(
                f"{self.settings.label}: certificate fingerprint mismatch at {exc.host}:{exc.port}: "
                f"expected SHA-256 {exc.expected.hex()}, the Envoy presented {exc.got.hex()}. If the Envoy "
                "got a new certificate (firmware update, replacement), update envoy.cert_fingerprint"
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EnvoyUnreachable(f"{self.settings.label}: {method} {url}: {_describe(exc)}") from exc

    async def _retry_pause(self, attempt: int) -> None:
        await self.clock.sleep(self._retry.delay(attempt - 1))

    async def _request(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        attempts: int = MAX_ATTEMPTS,
        time_limit: float | None = None,
    ) -> _Reply:
        """GET with retries for connection errors and 5xx (never for 4xx)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                reply = await self._send_once(url, headers, time_limit=time_limit)
            except _PinnedCertificateMismatch:
                raise
            except EnvoyUnreachable as exc:
                if attempt >= attempts:
                    raise
                self._log.debug("envoy_request_retry", url=url, attempt=attempt, error=str(exc))
                await self._retry_pause(attempt)
                continue
            if reply.status >= 500 and attempt < attempts:
                self._log.debug("envoy_request_retry", url=url, attempt=attempt, status=reply.status)
                await self._retry_pause(attempt)
                continue
            return reply

    def _require_base(self) -> str:
        if self.base_url is None:
            raise EnvoyError(f"{self.settings.label}: connect() first")
        return self.base_url

    def _interpret(self, path: str, reply: _Reply, parse_json: bool) -> Any:
        status = reply.status
        if 300 <= status < 400:
            raise EnvoyHttpError(
                f"{self.settings.label}: {path} redirects (HTTP {status}) to {reply.location}: not followed",
                status,
            )
        if status == 404:
            raise EnvoyNotFound(
                f"{self.settings.label}: {path} does not exist on this firmware (HTTP 404)", 404
            )
        if status >= 400:
            raise EnvoyHttpError(f"{self.settings.label}: {path} answered HTTP {status}", status)
        text = reply.text
        if not parse_json:
            return text
        stripped = text.strip()
        if not stripped:
            raise BadEnvoyData(f"{self.settings.label}: {path} answered an empty body")
        if stripped.startswith("<"):
            if "not found" in stripped.lower():
                raise EnvoyNotFound(f"{self.settings.label}: {path} answered an HTML 'page not found'", 404)
            raise BadEnvoyData(f"{self.settings.label}: {path} answered an HTML page instead of JSON")
        try:
            data = json.loads(stripped)
        except ValueError as exc:
            msg = getattr(exc, "msg", str(exc))
            raise BadEnvoyData(
                f"{self.settings.label}: {path} answered truncated or malformed JSON "
                f"({msg}, {len(stripped)} characters)"
            ) from None
        if isinstance(data, dict) and "error" in data and set(data) <= _ERROR_DOCUMENT_KEYS:
            error = _excerpt(data.get("error") or data.get("info") or "")
            raise EnvoyNotFound(
                f"{self.settings.label}: {path} answered an error document ({error!r})",
                404 if "404" in error else status,
            )
        return data

    async def check_jwt(self, token: str) -> bool:
        """Validate a token with the Envoy (sets the `sessionId` cookie the next requests ride on)."""
        base = self._require_base()
        async with self._queue.slot():
            reply = await self._request(base + endpoints.CHECK_JWT, {"Authorization": f"Bearer {token}"})
        if reply.status in (401, 403):
            return False
        if reply.status != 200:
            raise EnvoyHttpError(
                f"{self.settings.label}: {endpoints.CHECK_JWT} answered HTTP {reply.status}", reply.status
            )
        return "invalid" not in reply.text.lower()

    async def _get(
        self,
        path: str,
        *,
        parse_json: bool,
        recover_auth: bool = True,
        attempts: int = MAX_ATTEMPTS,
        time_limit: float | None = None,
    ) -> Any:
        base = self._require_base()
        url = base + path
        async with self._queue.slot():
            # At most: the request, again after a re-validation, again with a new token.
            for _ in range(4):
                headers: dict[str, str] | None = None
                manager = self.token_manager
                if manager is not None:
                    try:
                        token = await manager.get_token()
                    except TokenError as exc:
                        raise EnvoyAuthError(self._no_token_reason(manager, exc)) from exc
                    headers = {"Authorization": f"Bearer {token}"}
                reply = await self._request(url, headers, attempts, time_limit)
                if reply.status not in (401, 403):
                    data = self._interpret(path, reply, parse_json)
                    if manager is not None:
                        manager.note_success()
                    elif path in self._legacy_refused_paths:
                        # Only a path that was refused proves the credentials work again: open pages
                        # answer without any.
                        self._legacy_refused_paths.discard(path)
                        if not self._legacy_refused_paths:
                            self._legacy_status = AuthStatus(mode="legacy", ok=True)
                    return data
                if not recover_auth:
                    raise EnvoyPathRefused(f"{self.settings.label}: {path} answered HTTP {reply.status}")
                self._firmware_check_requested = True
                if manager is None:
                    raise self._legacy_refused(path, reply.status)
                try:
                    await manager.handle_unauthorized(self.check_jwt)
                except TokenError as exc:
                    raise EnvoyAuthError(str(exc)) from exc
            raise EnvoyAuthError(f"{self.settings.label}: {path} keeps answering 401 with a valid token")

    def _no_token_reason(self, manager: TokenManager, exc: TokenError) -> str:
        """Why there is no token to send; an expired one is named first (the cloud's error alone hides it)."""
        claims = manager.claims
        if claims is not None and claims.expired(self.clock.time()):
            return f"the token expired at {iso_utc(claims.expires_at)} and no new one could be fetched: {exc}"
        return str(exc)

    def _legacy_refused(self, path: str, status: int) -> EnvoyAuthError:
        user = self._legacy.username if self._legacy is not None else "?"
        reason = (
            f"the Envoy refused the credentials of user {user!r} on {path} (HTTP {status}): "
            "check envoy.username and envoy.password"
        )
        self._legacy_refused_paths.add(path)
        self._legacy_status = AuthStatus(mode="legacy", ok=False, reason=reason)
        self._log.error("envoy_auth_refused", path=path, status=status, user=user)
        return EnvoyAuthError(f"{self.settings.label}: {reason}")

    async def get_json(self, path: str) -> Any:
        """One data request: authentication, retries, precise errors; the parsed JSON body."""
        return await self._get(path, parse_json=True)

    async def get_json_once(self, path: str, time_limit: float) -> Any:
        """One real-time read: a single attempt (no retries on 5xx) bounded by `time_limit` seconds.

        Retrying a struggling Envoy is what freezes it; the real-time reader backs off instead.
        """
        return await self._get(path, parse_json=True, attempts=1, time_limit=time_limit)

    async def get_text(self, path: str) -> str:
        text = await self._get(path, parse_json=False)
        assert isinstance(text, str)
        return text

    async def get_body(self, path: str) -> Any:
        """A data endpoint's body as the normalizers take it: text for `endpoints.TEXT_ENDPOINTS`, else JSON."""
        if path in endpoints.TEXT_ENDPOINTS:
            return await self.get_text(path)
        return await self.get_json(path)

    async def write_json(self, method: str, path: str, document: Any) -> Any:
        """One write (PUT or POST of a JSON document), through the same queue and authentication.

        Never retried: a connection error or a 5xx leaves it unknown whether the Envoy carried the write
        out, so the caller reads the setting back instead. 4xx (401/403 included: an owner token on an
        installer endpoint) raise `EnvoyWriteRefused`. Returns the parsed answer, None when it is empty
        or not JSON (some endpoints answer 200 with nothing).
        """
        if method not in ("PUT", "POST"):
            raise ValueError(f"write_json takes PUT or POST, not {method}")
        base = self._require_base()
        body = json.dumps(document, separators=(",", ":")).encode("utf-8")
        async with self._queue.slot():
            headers = {"Content-Type": "application/json"}
            manager = self.token_manager
            if manager is not None:
                try:
                    token = await manager.get_token()
                except TokenError as exc:
                    raise EnvoyAuthError(self._no_token_reason(manager, exc)) from exc
                headers["Authorization"] = f"Bearer {token}"
            reply = await self._send_once(base + path, headers, method, body)
        if 400 <= reply.status < 500:
            raise EnvoyWriteRefused(
                f"{self.settings.label}: {method} {path} answered HTTP {reply.status}", reply.status
            )
        if reply.status >= 300:
            raise EnvoyHttpError(
                f"{self.settings.label}: {method} {path} answered HTTP {reply.status}", reply.status
            )
        try:
            return json.loads(reply.text) if reply.text.strip() else None
        except ValueError:
            return None

    async def probe_body(self, path: str) -> Any:
        """`get_body` without re-authenticating on 401/403: raises `EnvoyPathRefused` (some firmware
        protects endpoints the credentials cannot read; the probe counts them as absent)."""
        return await self._get(path, parse_json=path not in endpoints.TEXT_ENDPOINTS, recover_auth=False)

    # ------------------------------------------------------------------------------ /info, auth

    def _info_candidates(self) -> list[str]:
        urls = list(self.settings.base_urls)
        if self.settings.cert_fingerprint and len(urls) > 1:
            # A pinned certificate means https only: an http fallback would bypass the pin.
            urls = [u for u in urls if u.startswith("https://")]
        if self.base_url in urls:
            urls.remove(self.base_url)
            urls.insert(0, self.base_url)
        return urls

    async def _fetch_info(self) -> tuple[EnvoyInfo, str]:
        """`/info` over https, then http (firmware < 7 has no https); a few rounds with backoff."""
        candidates = self._info_candidates()
        last_error: EnvoyError | None = None
        for round_number in range(1, MAX_ATTEMPTS + 1):
            for base in candidates:
                try:
                    reply = await self._request(base + endpoints.INFO, attempts=1)
                except _PinnedCertificateMismatch:
                    raise
                except EnvoyUnreachable as exc:
                    self._log.info("envoy_info_unreachable", url=base, error=str(exc))
                    last_error = exc
                    continue
                if 300 <= reply.status < 400:
                    last_error = EnvoyUnreachable(
                        f"{self.settings.label}: {base}/info redirects to {reply.location}"
                    )
                    continue
                if reply.status != 200:
                    last_error = EnvoyHttpError(
                        f"{self.settings.label}: {base}/info answered HTTP {reply.status}", reply.status
                    )
                    continue
                return parse_info(reply.text), base
            if round_number < MAX_ATTEMPTS:
                await self._retry_pause(round_number)
        assert last_error is not None
        raise last_error

    async def connect(self) -> EnvoyInfo:
        """Read /info (https, then http), then set up authentication. May raise; `info` is set first."""
        async with self._queue.slot():
            info, base = await self._fetch_info()
            self._adopt_info(info, base)
            self._last_firmware_check = self.clock.monotonic()
            await self._setup_auth(info)
        return info

    def _adopt_info(self, info: EnvoyInfo, base: str) -> None:
        if self.base_url != base:
            self._digest = None  # digest credentials are scoped to one origin
        self.info = info
        self.base_url = base
        if self.settings.serial and self.settings.serial != info.serial:
            self._log.warning("envoy_serial_mismatch", configured=self.settings.serial, reported=info.serial)
        self._log.info(
            "envoy_info",
            url=base,
            serial=info.serial,
            firmware=info.firmware,
            part_number=info.part_number,
            auth_mode=info.auth_mode,
        )

    async def _setup_auth(self, info: EnvoyInfo) -> None:
        if info.auth_mode == "legacy":
            self.token_manager = None
            self._legacy = legacy_credentials(self.settings, info.serial)
            if self._legacy.username == INSTALLER_USER:
                register_secret(self._legacy.password)
            self._digest = self._legacy.middleware()
            self._legacy_refused_paths.clear()
            self._legacy_status = AuthStatus(mode="legacy", ok=True)
            self._log.info("legacy_auth", user=self._legacy.username, derived=self._legacy.derived)
            return
        self._legacy = None
        self._digest = None
        manager = self.token_manager
        if manager is None or manager.serial != info.serial:
            if self._cloud is None:
                self._cloud = CloudClient(self.cloud_settings)
            manager = TokenManager(
                self.settings,
                info.serial,
                self.cloud_settings,
                self.token_settings,
                TokenStore(self.state_dir),
                self._cloud,
                self.clock,
                validate=self.check_jwt,
                queue=self._queue,
            )
            self.token_manager = manager
        token = await manager.get_token()
        register_secret(token)

    async def refresh_firmware_if_due(self) -> bool:
        """Re-read /info every `firmware_check_interval` and after an auth failure.

        True when the firmware (or the serial) changed: authentication is set up again and the caller
        must probe again (`readers.probe`). Errors propagate; the check stays due until it succeeds.
        """
        mono = self.clock.monotonic()
        due = (
            self._firmware_check_requested
            or self._firmware_change_pending
            or self._last_firmware_check is None
            or mono - self._last_firmware_check >= self.firmware_check_interval
        )
        if not due:
            return False
        async with self._queue.slot():
            info, base = await self._fetch_info()
            self._last_firmware_check = self.clock.monotonic()
            self._firmware_check_requested = False
            old = self.info
            changed = (
                self._firmware_change_pending
                or old is None
                or old.firmware != info.firmware
                or old.serial != info.serial
            )
            if not changed and base == self.base_url:
                return False
            if changed:
                self._log.warning(
                    "envoy_firmware_changed",
                    old=old.firmware if old else None,
                    new=info.firmware,
                    serial=info.serial,
                )
            self._firmware_change_pending = changed
            self._adopt_info(info, base)
            if changed and self.token_manager is not None:
                self.token_manager.require_validation()
            await self._setup_auth(info)
            self._firmware_change_pending = False
            return changed
