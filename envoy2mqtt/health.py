"""Optional HTTP listener for liveness, readiness and Prometheus metrics (off by default).

- ``GET /healthz``: 200 ``{"status": "ok"}``. Answering at all proves the event loop runs.
- ``GET /readyz``: 200 or 503 with the JSON the readiness callback returns (which part is not ready).
- ``GET /metrics``: the Prometheus text format.
- ``GET /`` and ``GET /status.json``: the status page and what it shows (``statuspage``), when the
  daemon hands in a status source.

It binds 127.0.0.1 unless configured otherwise: the container image sets 0.0.0.0 on purpose.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import structlog
from aiohttp import web

from .config import HealthSettings
from .logging import redact
from .metrics import CONTENT_TYPE, Metrics
from .statuspage import CONTENT_SECURITY_POLICY, PAGE, status_document

if TYPE_CHECKING:
    from .bridge import EnvoyStatus

__all__ = ["HealthServer", "Readiness"]

Readiness = Callable[[], tuple[bool, dict[str, Any]]]

_log = structlog.get_logger(__name__)
_JSON: Final = "application/json"


def _json_response(body: dict[str, Any], status: int) -> web.Response:
    # redact: a readiness detail carrying an error text must not carry a secret with it
    text = json.dumps(redact(body), default=str, sort_keys=True)
    return web.Response(text=text, status=status, content_type=_JSON, headers={"Cache-Control": "no-store"})


class HealthServer:
    """An aiohttp server on ``settings.host:settings.port`` (port 0: a free port, see ``port``)."""

    def __init__(
        self,
        settings: HealthSettings,
        metrics: Metrics,
        readiness: Readiness,
        *,
        port: int | None = None,
        status: Callable[[], Sequence[EnvoyStatus]] | None = None,
    ) -> None:
        self._status = status
        self._settings = settings
        self._metrics = metrics
        self._readiness = readiness
        self._requested_port = settings.port if port is None else port
        self._runner: web.AppRunner | None = None
        self.port: int = self._requested_port
        self.host: str = settings.host

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_page)
        if self._status is not None:
            app.router.add_get("/", self._status_page)
            app.router.add_get("/status.json", self._status_json)
        return app

    async def start(self) -> None:
        if self._runner is not None:
            return
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._settings.host, self._requested_port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise  # the daemon turns it into one configuration error naming health.port
        self._runner = runner
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                self.port = int(address[1])
                break
        _log.info("health_listener_started", host=self._settings.host, port=self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            _log.info("health_listener_stopped", port=self.port)

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def _healthz(self, _request: web.Request) -> web.Response:
        return _json_response({"status": "ok"}, 200)

    async def _readyz(self, _request: web.Request) -> web.Response:
        try:
            ready, detail = self._readiness()
        except Exception as exc:  # a broken callback must read "not ready", not take the listener down
            _log.exception("readiness_check_failed")
            return _json_response({"status": "error", "error": type(exc).__name__}, 503)
        body = {"status": "ready" if ready else "not ready", **detail}
        return _json_response(body, 200 if ready else 503)

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        response = web.Response(body=self._metrics.render(), headers={"Cache-Control": "no-store"})
        # set the header whole: aiohttp's content_type/charset arguments cannot carry "version="
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def _status_page(self, _request: web.Request) -> web.Response:
        headers = {
            "Cache-Control": "no-store",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        return web.Response(text=PAGE, content_type="text/html", headers=headers)

    async def _status_json(self, _request: web.Request) -> web.Response:
        assert self._status is not None
        return _json_response(status_document(self._status(), time.time()), 200)
