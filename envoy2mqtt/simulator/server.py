"""The simulated Envoy (http or https with its own auth) and the fake Enphase cloud, as one async object.

Firmware < 7: plain http, HTTP Digest (`envoy` / `installer`) on /api/v1/production/inverters, /ivp/*,
/inventory*, /admin/*, /installer/*, /stream/*; everything else open.
Firmware >= 7: https with a self-signed certificate; /info open; everything else needs a bearer token this
simulator signed (aud = serial, not expired) or a `sessionId` cookie from /auth/check_jwt (10 idle minutes).

Real-time endpoints: `GET /ivp/livedata/status` (generated sites with firmware 7+ and ensemble) and
`POST /ivp/livedata/stream {"enable": 1}`, whose stream lapses after `stream_expiry` seconds
(simulator/livestream.py). A load model (simulator/load.py) makes answers slow, then 503, when clients
ask too often.

Control (no auth, loopback peers only), on the Envoy port:
  POST /__sim/faults  {"fault": "unauthorized"|"server_error"|"slow"|"malformed"|"drop"|"offline"|"clear",
                       "count": N (optional), "seconds": S (slow delay; offline: come back after S),
                       "status": 5xx (server_error)}
                      {"fault": "overload", "limit": R req/s, "window", "overload_after", "busy_for",
                       "delay_factor" (optional)}: switch the load model on ("clear" switches it off)
  GET  /__sim/stats   {"requests": {path?query: n}, "cloud_calls": {...}, "faults": {...},
                       "writes": [{"method", "path", "body", "status", "token_type"}], "controls": {...},
                       "load": {...}, "livedata": {"stream_enables", "stream_enabled"}, "recent": [...]}
  POST /__sim/controls {"behaviour": "applied"|"ignored"|"revert"|"reject", "controls": [...],
                        "revert_seconds": S, "reject_status": 4xx, "relay_seconds": S,
                        "dry_contact_settle_seconds": S, "opt_schedules": bool}  (simulator/controls.py)
  POST /__sim/site    generated sites only: {"inverter": serial, "output": 0-1.5, "reporting": bool,
                      "silent_for": S} (shade or fail one microinverter, or make it stop reporting, S
                      seconds ago), {"weather": "cloudy"|"clear"} (cloudy: a cloud layer and every
                      microinverter its own share of it), {"on_grid": bool} (the IQ System Controller's
                      relay, with `enpower`: a grid outage)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import shutil
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog
from aiohttp import web

from envoy2mqtt.clock import SYSTEM_CLOCK, Clock
from envoy2mqtt.envoy.auth.passwords import REALM, envoy_user_password, installer_password
from envoy2mqtt.envoy.endpoints import CHECK_JWT
from envoy2mqtt.errors import ConfigError
from envoy2mqtt.simulator.certs import generate_tls_material
from envoy2mqtt.simulator.cloud import ENLIGHTEN_PASSWORD, ENLIGHTEN_USERNAME, CloudControl, FakeCloud
from envoy2mqtt.simulator.controls import SiteControls
from envoy2mqtt.simulator.digest import DigestVerifier
from envoy2mqtt.simulator.faults import FaultController
from envoy2mqtt.simulator.livestream import DEFAULT_EXPIRY, LiveStream
from envoy2mqtt.simulator.load import LoadModel, LoadSettings
from envoy2mqtt.simulator.replay import CaptureSource
from envoy2mqtt.simulator.responses import (
    HTML_TYPE,
    JSON_TYPE,
    LEGACY_UNAUTHORIZED_JSON,
    SERVER_ERROR_HTML,
    UNAUTHORIZED_HTML,
    VALID_TOKEN_HTML,
    EnvoyResponse,
    EnvoySource,
)
from envoy2mqtt.simulator.simtime import SimulatedTime
from envoy2mqtt.simulator.site import PROFILES as SITE_PROFILES
from envoy2mqtt.simulator.site import GeneratedSite
from envoy2mqtt.simulator.tokens import TokenAuthority

log = structlog.get_logger(__name__)

PROFILES: tuple[str, ...] = tuple(SITE_PROFILES)
TOKEN_FIRMWARE = (7, 0, 0)
SESSION_COOKIE = "sessionId"
CONTROL_PREFIX = "/__sim/"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
# Legacy firmware: everything is open except these (digest with `envoy` or `installer`).
_LEGACY_PROTECTED_PREFIXES = ("/ivp/", "/admin/", "/installer/", "/inventory", "/stream/")
_LEGACY_PROTECTED_PATHS = ("/api/v1/production/inverters",)
_TOKEN_OPEN_PATHS = ("/info", "/info.xml")
LIVEDATA_STATUS = "/ivp/livedata/status"
LIVEDATA_STREAM = "/ivp/livedata/stream"
RECENT_REQUESTS = 2000


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    capture_dir: Path | None = None  # serve a capture folder; None = a generated site
    profile: str = (
        "metered-3phase-iq"  # generated: "metered-3phase-iq", "metered-1phase-acb", "legacy-unmetered"
    )
    live: bool = False  # values move (solar curve, consumption, battery, counters integrate)
    scale: int | None = None  # number of microinverters (replicates rows from the source)
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port
    cloud_port: int = 0
    token_lifetime: float = 365 * 86400  # seconds, for tokens issued by the fake cloud
    token_type: str = "owner"  # "owner" | "installer"
    serial: str | None = None  # override the serial (generated sites); captures use /info's
    legacy_password: str | None = None  # override the `envoy` user's password (default last 6 of serial)
    time_scale: float = 1.0  # live mode: simulated seconds per real second
    enpower: bool = False  # generated sites: an IQ System Controller (grid relay, dry contacts)
    relay_seconds: float = 0.0  # how long the grid relay takes to follow a write
    dry_contact_settle_seconds: float = 0.0  # dry contacts read "open" this long after a write
    opt_schedules: bool = False  # the tariff's opt_schedules: mode writes answered 200 and ignored
    shade: tuple[tuple[str, float], ...] = ()  # generated sites: (microinverter serial, output 0-1)
    stream_expiry: float = DEFAULT_EXPIRY  # seconds until the livedata stream switches itself off
    load: LoadSettings | None = None  # the load model; None: answers never slow down under load


def firmware_version(software: str) -> tuple[int, ...]:
    """`D8.2.4345` -> (8, 2, 4345): strip the letter prefix, keep the leading numbers."""
    numbers = re.findall(r"\d+", software[1:] if software[:1].isalpha() else software)
    return tuple(int(n) for n in numbers[:3]) or (0,)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 - bind-all is reached through loopback
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _build_source(config: SimulatorConfig, time: SimulatedTime) -> EnvoySource:
    if config.capture_dir is not None:
        return CaptureSource(config.capture_dir, time, config.scale)
    if config.profile not in PROFILES:
        raise ConfigError(
            f"unknown simulator profile {config.profile!r}; choose one of {', '.join(PROFILES)}"
        )
    site = GeneratedSite(
        config.profile, time, inverters=config.scale, serial=config.serial, enpower=config.enpower
    )
    for serial, output in config.shade:
        try:
            site.model.set_inverter(serial, output=output)
        except ValueError as exc:
            raise ConfigError(f"--shade: {exc}") from None
    return site


class Simulator:
    """A simulated Envoy plus the fake Enphase cloud; use as `async with Simulator(config) as sim:`."""

    enlighten_username: str = ENLIGHTEN_USERNAME
    enlighten_password: str = ENLIGHTEN_PASSWORD

    def __init__(self, config: SimulatorConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        if config.token_type not in ("owner", "installer"):
            raise ConfigError("token_type must be 'owner' or 'installer'")
        self.config = config
        self.clock = clock
        self.requests: collections.Counter[str] = collections.Counter()
        self.cloud_calls: collections.Counter[str] = collections.Counter()
        self.faults = FaultController()
        self.faults.bind(self.stop_envoy, self._restore_envoy)
        self.load = LoadModel(config.load)
        self.stream = LiveStream(config.stream_expiry)
        # (monotonic seconds, "METHOD path?query") of the latest requests, oldest first
        self.recent: collections.deque[tuple[float, str]] = collections.deque(maxlen=RECENT_REQUESTS)
        self.cloud = CloudControl()
        self.url = ""
        self.cloud_url = ""
        self.login_url = ""
        self.token_url = ""
        self.ca_file = Path()
        self.envoy_cert_fingerprint = ""
        self.serial = ""
        self.firmware = ""
        self.token_auth = False
        self._tmp: Path | None = None
        self._source: EnvoySource | None = None
        self._time: SimulatedTime | None = None
        self._authority: TokenAuthority | None = None
        self._digest: DigestVerifier | None = None
        self._envoy_runner: web.AppRunner | None = None
        self._cloud_runner: web.AppRunner | None = None
        self._envoy_server: asyncio.AbstractServer | None = None
        self._cloud_server: asyncio.AbstractServer | None = None
        self._envoy_ssl: ssl.SSLContext | None = None
        self._envoy_port = 0
        self.listening: list[tuple[str, int]] = []  # (address, port) really bound: Envoy, then cloud
        self._pending_listen: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.controls: SiteControls | None = None

    # ------------------------------------------------------------------------------------------ life

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        config = self.config
        self._time = SimulatedTime(self.clock, config.live, config.time_scale)
        self._source = _build_source(config, self._time)
        self.serial = self._source.serial
        self.firmware = self._source.firmware
        self.token_auth = firmware_version(self.firmware) >= TOKEN_FIRMWARE
        if isinstance(self._source, GeneratedSite) and self._source.profile.ensemble:
            self.controls = SiteControls(
                batteries=self._source.profile.iq_batteries > 0,
                enpower=config.enpower,
                clock=self.clock,
                relay_seconds=config.relay_seconds,
                dry_contact_settle_seconds=config.dry_contact_settle_seconds,
                opt_schedules=config.opt_schedules,
            )
            controls = self.controls
            self._source.relay_state = lambda: str(controls.snapshot()["mains_oper_state"])
        self._tmp = Path(tempfile.mkdtemp(prefix="envoy2mqtt-sim-"))
        tls = generate_tls_material(self._tmp, [config.host])
        self.ca_file = tls.ca_file
        self.envoy_cert_fingerprint = tls.envoy_fingerprint
        self._authority = TokenAuthority(self.serial, self.clock)
        self._digest = DigestVerifier(
            REALM,
            {
                "envoy": config.legacy_password or envoy_user_password(self.serial),
                "installer": installer_password(self.serial),
            },
        )

        if self.token_auth:
            self._envoy_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._envoy_ssl.load_cert_chain(tls.envoy_cert, tls.envoy_key)
        cloud_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cloud_ssl.load_cert_chain(tls.cloud_cert, tls.cloud_key)

        envoy_app = web.Application()
        envoy_app.router.add_route("*", "/{tail:.*}", self._handle)
        self._envoy_runner = web.AppRunner(
            envoy_app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._envoy_runner.setup()
        cloud = FakeCloud(
            self.cloud,
            self.cloud_calls,
            self._cloud_token,
            username=self.enlighten_username,
            password=self.enlighten_password,
        )
        self._cloud_runner = web.AppRunner(
            cloud.app(), access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._cloud_runner.setup()

        loop = asyncio.get_running_loop()
        envoy_sock = _bind(config.host, config.port)
        self._envoy_port = int(envoy_sock.getsockname()[1])
        envoy_factory = self._envoy_runner.server
        cloud_factory = self._cloud_runner.server
        assert envoy_factory is not None
        assert cloud_factory is not None
        self._envoy_server = await loop.create_server(envoy_factory, sock=envoy_sock, ssl=self._envoy_ssl)
        cloud_sock = _bind(config.host, config.cloud_port)
        cloud_port = int(cloud_sock.getsockname()[1])
        self._cloud_server = await loop.create_server(cloud_factory, sock=cloud_sock, ssl=cloud_ssl)

        self.listening = [
            (str(sock.getsockname()[0]), int(sock.getsockname()[1])) for sock in (envoy_sock, cloud_sock)
        ]
        host = _url_host(config.host)
        self.url = f"{'https' if self.token_auth else 'http'}://{host}:{self._envoy_port}"
        self.cloud_url = f"https://{host}:{cloud_port}"
        self.login_url = f"{self.cloud_url}/login/login.json"
        self.token_url = f"{self.cloud_url}/tokens"
        log.info(
            "simulator_started",
            url=self.url,
            cloud_url=self.cloud_url,
            serial=self.serial,
            firmware=self.firmware,
            source=str(config.capture_dir) if config.capture_dir else config.profile,
        )

    async def stop(self) -> None:
        for task in [*self._background, *([self._pending_listen] if self._pending_listen else [])]:
            task.cancel()
        for task in [*self._background, *([self._pending_listen] if self._pending_listen else [])]:
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        self._background.clear()
        self._pending_listen = None
        for server in (self._envoy_server, self._cloud_server):
            if server is not None:
                server.close()
        self._envoy_server = self._cloud_server = None
        for runner in (self._envoy_runner, self._cloud_runner):
            if runner is not None:
                await runner.cleanup()
        self._envoy_runner = self._cloud_runner = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def stop_envoy(self) -> None:
        """Take the Envoy listener down now: new connections are refused, open ones are closed."""
        if self._envoy_server is not None:
            self._envoy_server.close()
            self._envoy_server = None
        if self._pending_listen is not None:
            self._pending_listen.cancel()
            self._pending_listen = None
        if self._envoy_runner is not None and self._envoy_runner.server is not None:
            for connection in list(self._envoy_runner.server.connections):
                connection.force_close()
        log.info("simulator_envoy_stopped", port=self._envoy_port)

    async def start_envoy(self) -> None:
        """Bring the Envoy listener back on the same port."""
        self.faults.is_offline = False
        if self._envoy_server is None and self._pending_listen is None:
            self._restore_envoy()
        if self._pending_listen is not None:
            task = self._pending_listen
            await task
            if self._pending_listen is task:
                self._pending_listen = None

    def _restore_envoy(self) -> None:
        """Listen again synchronously (the kernel queues connections at once) and serve from a task."""
        if self._envoy_server is not None or self._envoy_runner is None or self._pending_listen is not None:
            return
        sock = _bind(self.config.host, self._envoy_port)
        server_factory = self._envoy_runner.server
        assert server_factory is not None

        async def serve() -> None:
            loop = asyncio.get_running_loop()
            try:
                self._envoy_server = await loop.create_server(server_factory, sock=sock, ssl=self._envoy_ssl)
            except BaseException:
                sock.close()
                raise
            log.info("simulator_envoy_started", port=self._envoy_port)

        self._pending_listen = asyncio.get_running_loop().create_task(serve())

    # ------------------------------------------------------------------------------------------ tokens

    def issue_token(
        self, token_type: str = "owner", lifetime: float | None = None, serial: str | None = None
    ) -> str:
        """A JWT signed like the fake cloud signs them (for this Envoy unless `serial` says otherwise)."""
        return self._tokens.issue(
            token_type=token_type,
            lifetime=self.config.token_lifetime if lifetime is None else lifetime,
            serial=serial,
            username=self.enlighten_username,
        )

    def _cloud_token(self, serial: str, username: str) -> str:
        return self._tokens.issue(
            token_type=self.config.token_type,
            lifetime=self.config.token_lifetime,
            serial=serial,
            username=username,
        )

    @property
    def _tokens(self) -> TokenAuthority:
        if self._authority is None:
            raise RuntimeError("the simulator is not started")
        return self._authority

    @property
    def legacy_envoy_password(self) -> str:
        return self.config.legacy_password or envoy_user_password(self.serial)

    @property
    def installer_password(self) -> str:
        return installer_password(self.serial)

    # ------------------------------------------------------------------------------------------ HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith(CONTROL_PREFIX):
            return await self._control(request)
        now = self.clock.monotonic()
        name = request.path_qs if request.method == "GET" else f"{request.method} {request.path_qs}"
        self.requests[name] += 1
        self.recent.append((now, f"{request.method} {request.path_qs}"))
        load = self.load.admit(now)
        if load.delay > 0:
            await asyncio.sleep(load.delay)
        if load.busy:
            return web.Response(
                status=503, body=SERVER_ERROR_HTML.format(status=503).encode(), content_type=HTML_TYPE
            )
        decision = self.faults.next_request()
        if decision.delay > 0:
            await asyncio.sleep(decision.delay)
        if decision.drop:
            return self._drop(request)
        if decision.unauthorized:
            return self._unauthorized()
        if decision.server_error is not None:
            status = decision.server_error
            return web.Response(
                status=status, body=SERVER_ERROR_HTML.format(status=status).encode(), content_type=HTML_TYPE
            )

        token_type: str | None = None
        if self.token_auth:
            if path == CHECK_JWT:
                return self._check_jwt(request)
            if path not in _TOKEN_OPEN_PATHS:
                token_type = self._token_type(request)
                if token_type is None:
                    return self._unauthorized()
        elif self._legacy_protected(path):
            user = self._digest_user(request)
            if user is None:
                return self._unauthorized()
            token_type = "installer" if user == "installer" else "owner"

        if self.controls is not None and self.controls.handles(path):
            body = await request.read() if request.method != "GET" else b""
            answer = self.controls.respond(request.method, path, body, token_type)
            return web.Response(status=answer.status, body=answer.body, content_type=answer.content_type)
        assert self._source is not None
        if path == LIVEDATA_STREAM:
            return await self._livedata_stream(request)
        answer = self._source.respond(path, request.query_string)
        if path == LIVEDATA_STATUS and answer.status == 200:
            live_body = self.stream.status(self.clock.monotonic(), json.loads(answer.body))
            answer = EnvoyResponse(200, json.dumps(live_body).encode(), JSON_TYPE)
        if decision.malformed and answer.status == 200:
            answer = _truncated(answer)
        return web.Response(status=answer.status, body=answer.body, content_type=answer.content_type)

    async def _livedata_stream(self, request: web.Request) -> web.Response:
        """`POST {"enable": 1}` switches the stream on for `stream_expiry` seconds; `{"enable": 0}` off."""
        assert self._source is not None
        if self._source.respond(LIVEDATA_STATUS, "").status != 200:
            return web.Response(status=404, body=b"", content_type=HTML_TYPE)
        if request.method != "POST":
            return web.json_response(
                {"sc_stream": "enabled" if self.stream.enabled(self.clock.monotonic()) else "disabled"}
            )
        try:
            body = json.loads(await request.text())
            enable = int(body["enable"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'expected {"enable": 0 or 1}'}, status=400)
        if enable:
            self.stream.enable(self.clock.monotonic())
        else:
            self.stream.enabled_until = -1.0
        return web.json_response({"sc_stream": "enabled" if enable else "disabled"})

    def _token_type(self, request: web.Request) -> str | None:
        """The `enphaseUser` of the request's token or session; None when neither is valid."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            claims = self._tokens.validate(token.strip())
            if claims is not None:
                return str(claims.get("enphaseUser") or "owner")
        session = request.cookies.get(SESSION_COOKIE)
        if self._tokens.use_session(session):
            return self._tokens.session_type(session)
        return None

    def _check_jwt(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or self._tokens.validate(token.strip()) is None:
            return self._unauthorized()
        response = web.Response(body=VALID_TOKEN_HTML.encode(), content_type=HTML_TYPE)
        claims = self._tokens.validate(token.strip()) or {}
        session = self._tokens.open_session(str(claims.get("enphaseUser") or "owner"))
        response.set_cookie(SESSION_COOKIE, session, path="/", secure=True, httponly=True)
        return response

    @staticmethod
    def _legacy_protected(path: str) -> bool:
        return path in _LEGACY_PROTECTED_PATHS or path.startswith(_LEGACY_PROTECTED_PREFIXES)

    def _digest_user(self, request: web.Request) -> str | None:
        assert self._digest is not None
        return self._digest.verify(request.method, request.path_qs, request.headers.get("Authorization"))

    def _unauthorized(self) -> web.Response:
        if self.token_auth:
            return web.Response(status=401, body=UNAUTHORIZED_HTML.encode(), content_type=HTML_TYPE)
        assert self._digest is not None
        return web.Response(
            status=401,
            body=json.dumps(LEGACY_UNAUTHORIZED_JSON).encode(),
            content_type=JSON_TYPE,
            headers={"WWW-Authenticate": self._digest.challenge()},
        )

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()
        # Nothing reaches the client; aiohttp discards this answer on the aborted transport.
        return web.Response(status=500)

    # ------------------------------------------------------------------------------------------ control

    async def _control(self, request: web.Request) -> web.StreamResponse:
        if request.remote not in _LOOPBACK:
            return web.json_response({"error": "the control endpoint only answers loopback"}, status=403)
        if request.path == "/__sim/stats" and request.method == "GET":
            return web.json_response(
                {
                    "requests": dict(self.requests),
                    "cloud_calls": dict(self.cloud_calls),
                    "faults": self.faults.snapshot(),
                    "load": self.load.snapshot(self.clock.monotonic()),
                    "livedata": {
                        "stream_enables": self.stream.enables,
                        "stream_enabled": self.stream.enabled(self.clock.monotonic()),
                        "stream_expiry": self.stream.expiry,
                    },
                    "recent": [[round(t, 3), what] for t, what in self.recent],
                    "serial": self.serial,
                    "firmware": self.firmware,
                    "writes": [
                        {
                            "method": w.method,
                            "path": w.path,
                            "body": w.body,
                            "status": w.status,
                            "token_type": w.token_type,
                        }
                        for w in (self.controls.writes if self.controls is not None else [])
                    ],
                    "controls": self.controls.snapshot() if self.controls is not None else None,
                }
            )
        if request.path == "/__sim/controls" and request.method == "POST":
            if self.controls is None:
                return web.json_response(
                    {"error": "this simulated Envoy has no writable settings"}, status=404
                )
            try:
                body = json.loads(await request.text())
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                self.controls.configure(body)
            except (ValueError, TypeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.json_response({"ok": True, "controls": self.controls.snapshot()})
        if request.path == "/__sim/faults" and request.method == "POST":
            try:
                body = json.loads(await request.text())
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                kind = str(body["fault"])
                count = body.get("count")
                options = {k: v for k, v in body.items() if k not in ("fault", "count")}
                if kind == "offline":
                    return await self._control_offline(request, options)
                if kind == "overload":
                    self.load.configure(_load_settings(options))
                    return web.json_response({"ok": True, "load": self.load.snapshot(self.clock.monotonic())})
                if kind == "clear":
                    self.load.configure(None)
                self.faults.apply(kind, None if count is None else int(count), **options)
            except (ValueError, KeyError, TypeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.json_response({"ok": True, "faults": self.faults.snapshot()})
        if request.path == "/__sim/site" and request.method == "POST":
            return await self._control_site(request)
        return web.json_response({"error": "unknown control endpoint"}, status=404)

    async def _control_site(self, request: web.Request) -> web.StreamResponse:
        source = self._source
        if not isinstance(source, GeneratedSite):
            return web.json_response({"error": "only generated sites take site changes"}, status=400)
        model = source.model
        try:
            body = json.loads(await request.text())
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            if "inverter" in body:
                output = body.get("output")
                reporting = body.get("reporting")
                if reporting is not None and not isinstance(reporting, bool):
                    raise ValueError("reporting must be true or false")
                model.set_inverter(
                    str(body["inverter"]),
                    output=None if output is None else float(output),
                    reporting=reporting,
                    silent_for=float(body.get("silent_for", 0.0)),
                )
            if "weather" in body:
                if body["weather"] not in ("cloudy", "clear"):
                    raise ValueError("weather must be 'cloudy' or 'clear'")
                model.cloudy = body["weather"] == "cloudy"
            if "on_grid" in body:
                if not isinstance(body["on_grid"], bool):
                    raise ValueError("on_grid must be true or false")
                if self.controls is None or not source.enpower:
                    raise ValueError("on_grid needs an IQ System Controller (enpower)")
                self.controls.set_value("grid_relay", "closed" if body["on_grid"] else "open")
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(
            {
                "ok": True,
                "output": model.output_factor,
                "silent": sorted(model.silent_since),
                "cloudy": model.cloudy,
                "on_grid": source.relay_state() == "closed",
            }
        )

    async def _control_offline(self, request: web.Request, options: dict[str, Any]) -> web.StreamResponse:
        """Answer first, then go offline; with `seconds`, come back by itself (HTTP cannot clear it)."""
        response = web.json_response({"ok": True, "offline": True})
        await response.prepare(request)
        await response.write_eof()
        self.faults.offline()
        seconds = options.get("seconds")
        if seconds is not None:

            async def come_back() -> None:
                await asyncio.sleep(float(seconds))
                self.faults.clear()

            task = asyncio.get_running_loop().create_task(come_back())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return response


def _load_settings(options: dict[str, Any]) -> LoadSettings:
    """The load model's settings from a `POST /__sim/faults {"fault": "overload", ...}` body."""
    allowed = {"limit", "window", "overload_after", "busy_for", "delay_factor"}
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"unknown overload option(s): {', '.join(sorted(unknown))}")
    values = {key: float(value) for key, value in options.items()}
    if "limit" not in values or values["limit"] <= 0:
        raise ValueError("overload needs a positive limit (requests per second)")
    return LoadSettings(**values)


def _truncated(answer: EnvoyResponse) -> EnvoyResponse:
    body = answer.body
    cut = max(1, len(body) // 2)
    return EnvoyResponse(
        200, body[:cut], JSON_TYPE if answer.content_type == JSON_TYPE else answer.content_type
    )
