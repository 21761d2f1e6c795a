"""The token lifecycle of one firmware-7+ Envoy: where the token comes from, when it is renewed,
and what happens when the Envoy refuses it (envoy-local-api.md §2.5-§2.8, field-notes.md §2A).

Sources, in order: the token store (zero cloud calls after a restart), the token pasted in the
configuration, the Enphase cloud (Enlighten credentials). Every token is validated once with
`/auth/check_jwt` before use. On a 401/403 the current token is re-validated once, then one new token
is fetched; when that fails too the Envoy is marked unauthenticated and every attempt waits for an
exponential backoff step (no network call in between): never a tight loop against the cloud.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from envoy2mqtt.clock import Clock, iso_utc
from envoy2mqtt.config import CloudSettings, EnvoySettings, TokenSettings
from envoy2mqtt.envoy.queue import RequestQueue
from envoy2mqtt.errors import EnvoyAuthError, TokenError, TokenRefreshError, TokenRejected
from envoy2mqtt.logging import register_secret
from envoy2mqtt.retry import RetryPolicy

from .cloud import CloudClient
from .status import AuthStatus
from .store import TokenSource, TokenStore
from .token import TokenClaims, check_audience, decode_token

log = structlog.get_logger(__name__)

Validator = Callable[[str], Awaitable[bool]]

BACKOFF_BASE = 60.0  # first wait after a failure; doubles up to TokenSettings.max_backoff
EXPIRY_WARNING_EVERY = 24 * 3600.0


class TokenManager:
    def __init__(
        self,
        envoy: EnvoySettings,
        serial: str,
        cloud: CloudSettings,
        settings: TokenSettings,
        store: TokenStore,
        http: CloudClient,
        clock: Clock,
        *,
        validate: Validator | None = None,
        queue: RequestQueue | None = None,
    ) -> None:
        self.envoy = envoy
        self.serial = serial  # the Envoy's serial, from /info: every token's `aud` must match it
        self.cloud = cloud
        self.settings = settings
        self.store = store
        self.http = http
        self.clock = clock
        self._validate = validate
        self._queue = queue or RequestQueue()
        self._log = log.bind(envoy=envoy.label, serial=serial)

        self._token: str | None = None
        self._claims: TokenClaims | None = None
        self._source: TokenSource | None = None
        self._validated = False
        # One 401 episode: at most one re-validation and one new token.
        self._rechecked = False
        self._refreshed = False
        self._unauthenticated = False
        # Waits between 401 episodes' steps and between cloud attempts: exact, since the user is told
        # "next attempt in N s" (no jitter), doubling from BACKOFF_BASE up to token.max_backoff.
        self._auth_backoff = RetryPolicy(
            initial=min(BACKOFF_BASE, settings.max_backoff),
            cap=settings.max_backoff,
            jitter=(1.0, 1.0),
            clock=clock,
        )
        self._auth_retry_at = 0.0  # monotonic
        self._cloud_backoff = RetryPolicy(
            initial=min(BACKOFF_BASE, settings.max_backoff),
            cap=settings.max_backoff,
            jitter=(1.0, 1.0),
            clock=clock,
        )
        self._cloud_retry_at = 0.0  # monotonic
        self._cloud_error: str | None = None
        self._reason: str | None = None
        self._last_expiry_warning: float | None = None

    # ----------------------------------------------------------------------------------- state

    @property
    def token_serial(self) -> str:
        """The serial asked for at Entrez: the configured one when set, else the one from /info."""
        return self.envoy.serial or self.serial

    @property
    def claims(self) -> TokenClaims | None:
        return self._claims

    @property
    def status(self) -> AuthStatus:
        claims = self._claims
        now = self.clock.time()
        ok = (
            self._token is not None
            and claims is not None
            and self._validated
            and not self._unauthenticated
            and not claims.expired(now)
        )
        reason = self._reason
        if not ok and reason is None:
            if claims is not None and claims.expired(now):
                reason = f"the token expired at {iso_utc(claims.expires_at)}"
            else:
                reason = "no valid token yet"
        return AuthStatus(
            mode="token",
            token_type=claims.token_type if claims else None,
            token_expires_at=claims.expires_at if claims else None,
            ok=ok,
            reason=reason,
        )

    def require_validation(self) -> None:
        """After a firmware change: validate the current token again before the next request."""
        self._validated = False

    def note_success(self) -> None:
        """A data request succeeded with the current token: the 401 episode is over."""
        self._validated = True  # the Envoy just accepted it
        if self._unauthenticated or self._auth_backoff.failures or self._rechecked or self._refreshed:
            if self._unauthenticated:
                self._log.info("envoy_authenticated_again")
            self._unauthenticated = False
            self._auth_backoff.succeeded()
            self._auth_retry_at = 0.0
            self._rechecked = False
            self._refreshed = False
            self._reason = None

    def _threshold(self, claims: TokenClaims) -> float:
        if claims.token_type == "installer":
            return self.settings.installer_refresh_minutes_before_expiry * 60.0
        return self.settings.refresh_days_before_expiry * 86400.0

    async def _check(self, token: str, validate: Validator | None = None) -> bool:
        check = validate or self._validate
        if check is None:
            return True
        return await check(token)

    def _adopt(self, token: str, claims: TokenClaims, source: TokenSource, *, save: bool) -> None:
        now = self.clock.time()
        register_secret(token)
        if save:
            self.store.save(self.serial, token, claims, source, now)
        self._token = token
        self._claims = claims
        self._source = source
        self._validated = True
        self._unauthenticated = False
        self._reason = None
        self._log.info(
            "token_in_use",
            source=source,
            token_type=claims.token_type,
            expires_at=iso_utc(claims.expires_at),
        )
        self._warn_if_expiring(now)

    def _mark_unauthenticated(self, reason: str) -> EnvoyAuthError:
        self._unauthenticated = True
        delay = self._auth_backoff.failed()
        self._auth_retry_at = self.clock.monotonic() + delay
        self._reason = reason
        self._log.error("envoy_unauthenticated", reason=reason, retry_in_seconds=delay)
        return EnvoyAuthError(f"{self.envoy.label}: {reason}")

    def _gated_error(self) -> EnvoyAuthError:
        wait = max(0.0, self._auth_retry_at - self.clock.monotonic())
        return EnvoyAuthError(
            f"{self.envoy.label}: not authenticated ({self._reason}); next attempt in {wait:.0f} s"
        )

    def _warn_if_expiring(self, now: float) -> None:
        """Tokens that cannot be renewed (no Enlighten credentials): warn before expiry, error after."""
        claims = self._claims
        if claims is None or self.envoy.has_cloud_credentials:
            return
        remaining = claims.remaining(now)
        if remaining > self._threshold(claims):
            return
        mono = self.clock.monotonic()
        if claims.expired(now):
            self._reason = (
                f"the token expired at {iso_utc(claims.expires_at)} and cannot be renewed without "
                "Enlighten credentials: paste a new token into envoy.token or set envoy.enlighten_username "
                "and envoy.enlighten_password"
            )
        else:
            self._reason = (
                f"the token expires at {iso_utc(claims.expires_at)} and cannot be renewed without "
                "Enlighten credentials: paste a new token into envoy.token before then, or set "
                "envoy.enlighten_username and envoy.enlighten_password"
            )
        if self._last_expiry_warning is None or mono - self._last_expiry_warning >= EXPIRY_WARNING_EVERY:
            self._last_expiry_warning = mono
            if claims.expired(now):
                self._log.error("token_expired", reason=self._reason)
            else:
                self._log.warning(
                    "token_expiring", reason=self._reason, days_left=round(remaining / 86400, 1)
                )

    # ------------------------------------------------------------------------------ acquisition

    async def get_token(self) -> str:
        """The current valid token: from memory, the store, the configuration or the cloud."""
        async with self._queue.slot():
            now = self.clock.time()
            if self._unauthenticated:
                if self.clock.monotonic() < self._auth_retry_at:
                    raise self._gated_error()
                # A new backoff step: one more try with the current token, one re-validation, one refresh.
                self._rechecked = False
                self._refreshed = False
                if self._token is not None and self._claims is not None and not self._claims.expired(now):
                    return self._token
            token, claims = self._token, self._claims
            if token is not None and claims is not None and not claims.expired(now):
                if self._validated:
                    self._warn_if_expiring(now)
                    return token
                if await self._check(token):
                    self._validated = True
                    return token
                self._log.warning("token_rejected_by_envoy", source=self._source)
            return await self._acquire(now, exclude=token)

    async def _acquire(self, now: float, exclude: str | None = None) -> str:
        candidates: list[tuple[str, TokenClaims, TokenSource, str]] = []
        problems: list[str] = []
        stored = self.store.load(self.serial, now)
        if stored is not None:
            candidates.append((stored.token, stored.claims, stored.source, "stored"))
        pasted = self.envoy.token.get_secret_value().strip()
        if pasted:
            try:
                claims = decode_token(pasted)
                check_audience(claims, self.serial)
            except TokenRejected as exc:
                problems.append(f"the configured token (envoy.token) is unusable: {exc}")
            else:
                if claims.expired(now):
                    problems.append(
                        f"the configured token (envoy.token) expired at {iso_utc(claims.expires_at)}"
                    )
                else:
                    candidates.append((pasted, claims, "config", "configured"))
        seen: set[str] = set()
        if exclude is not None:
            seen.add(exclude)
        for token, claims, source, origin in sorted(candidates, key=lambda c: c[1].expires_at, reverse=True):
            if token in seen:
                continue
            seen.add(token)
            if await self._check(token):
                already_stored = stored is not None and stored.token == token
                self._adopt(token, claims, source, save=not already_stored)
                return token
            problems.append(f"the Envoy rejected the {origin} token (check_jwt)")
            self._log.warning("token_rejected_by_envoy", source=origin)
            if origin == "stored":
                self.store.delete(self.serial)

        if self.envoy.has_cloud_credentials:
            for problem in problems:
                self._log.warning("token_unusable", reason=problem)
            try:
                return await self._fetch_from_cloud()
            except TokenError as exc:
                # No usable token at all: the cloud's answer is the reason (MFA, wrong password...).
                # The cloud backoff keeps later attempts from calling it before the next step.
                self._reason = str(exc)
                raise

        if problems:
            reason = "; ".join(problems) + (
                ": paste a valid token into envoy.token, or set envoy.enlighten_username and "
                "envoy.enlighten_password so that envoy2mqtt can get one"
            )
            error = self._mark_unauthenticated(reason)
            raise TokenRejected(str(error))
        raise self._mark_unauthenticated(
            "no token: set envoy.token (a token from https://entrez.enphaseenergy.com) or "
            "envoy.enlighten_username and envoy.enlighten_password"
        )

    async def _fetch_from_cloud(self, validate: Validator | None = None) -> str:
        """One cloud attempt; TokenError on failure (previous token kept), backoff for the next one."""
        mono = self.clock.monotonic()
        if mono < self._cloud_retry_at:
            raise TokenRefreshError(
                f"not asking the Enphase cloud again for {self._cloud_retry_at - mono:.0f} s "
                f"(last failure: {self._cloud_error})"
            )
        try:
            token = await self.http.fetch_token(
                self.envoy.enlighten_username,
                self.envoy.enlighten_password.get_secret_value(),
                self.token_serial,
            )
            claims = decode_token(token)
            check_audience(claims, self.serial)
            if claims.expired(self.clock.time()):
                raise TokenRejected(
                    f"the Enphase cloud returned a token that expired at {iso_utc(claims.expires_at)}"
                )
            if not await self._check(token, validate):
                raise TokenRejected("the Envoy rejected the new token from the Enphase cloud (check_jwt)")
        except TokenError as exc:
            delay = self._cloud_backoff.failed()
            self._cloud_retry_at = self.clock.monotonic() + delay
            self._cloud_error = str(exc)
            self._log.warning(
                "token_fetch_failed",
                reason=str(exc),
                error=type(exc).__name__,
                retry_in_seconds=delay,
            )
            raise
        self._cloud_backoff.succeeded()
        self._cloud_retry_at = 0.0
        self._cloud_error = None
        self._adopt(token, claims, "cloud", save=True)
        return token

    # ---------------------------------------------------------------------------- 401 and refresh

    async def handle_unauthorized(self, validate: Validator) -> str:
        """The Envoy answered 401/403: re-validate once, then fetch one new token, else back off.

        Returns the token to retry the request with; raises EnvoyAuthError when the Envoy is (still)
        unauthenticated, without any network call while a backoff step is running.
        """
        async with self._queue.slot():
            if self._unauthenticated:
                if self.clock.monotonic() < self._auth_retry_at:
                    raise self._gated_error()
                self._rechecked = False
                self._refreshed = False
            now = self.clock.time()
            token, claims = self._token, self._claims
            if token is not None and claims is not None and not self._rechecked:
                self._rechecked = True
                if not claims.expired(now) and await validate(token):
                    self._validated = True
                    self._log.info("token_revalidated")
                    return token
                self._validated = False
                self._log.warning("token_rejected_by_envoy", source=self._source)
            if not self._refreshed and self.envoy.has_cloud_credentials:
                self._refreshed = True
                try:
                    new_token = await self._fetch_from_cloud(validate)
                except TokenError as exc:
                    raise self._mark_unauthenticated(f"the Envoy refuses the token and {exc}") from exc
                self._rechecked = True  # just validated
                self._refreshed = True
                return new_token
            if not self.envoy.has_cloud_credentials:
                reason = (
                    "the Envoy refuses the token and no Enlighten credentials are configured to get a new "
                    "one: paste a new token into envoy.token or set envoy.enlighten_username and "
                    "envoy.enlighten_password"
                )
            else:
                reason = "the Envoy still refuses a freshly validated token"
            raise self._mark_unauthenticated(reason)

    async def force_refresh(self) -> str:
        """Fetch, validate and store a new token now (`envoy2mqtt token refresh`); TokenError on failure.

        An explicit request from the operator, so the backoff of automatic attempts does not apply;
        the current token is kept when it fails.
        """
        async with self._queue.slot():
            if not self.envoy.has_cloud_credentials:
                raise TokenRefreshError(
                    "cannot get a new token without envoy.enlighten_username and envoy.enlighten_password"
                )
            self._cloud_retry_at = 0.0
            return await self._fetch_from_cloud()

    async def refresh_if_due(self) -> bool:
        """Proactive renewal before expiry; True when a new token was stored.

        Owner tokens: `refresh_days_before_expiry` days before expiry; installer tokens:
        `installer_refresh_minutes_before_expiry` minutes before. A failure keeps the current token
        (polling goes on while it is valid) and waits for the next backoff step.
        """
        async with self._queue.slot():
            claims = self._claims
            if self._token is None or claims is None:
                return False
            now = self.clock.time()
            if claims.remaining(now) > self._threshold(claims):
                return False
            if not self.envoy.has_cloud_credentials:
                self._warn_if_expiring(now)
                return False
            if self.clock.monotonic() < self._cloud_retry_at:
                return False
            self._log.info(
                "token_refresh_due",
                token_type=claims.token_type,
                expires_at=iso_utc(claims.expires_at),
            )
            try:
                await self._fetch_from_cloud()
            except TokenError as exc:
                if claims.expired(now):
                    self._reason = f"the token expired and could not be renewed: {exc}"
                else:
                    self._reason = (
                        f"token renewal failed, the current token stays valid until "
                        f"{iso_utc(claims.expires_at)}: {exc}"
                    )
                return False
            return True
