"""A fake of the two Enphase cloud calls the token flow uses: Enlighten login and Entrez /tokens."""

from __future__ import annotations

import collections
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

ENLIGHTEN_USERNAME = "user@example.com"
ENLIGHTEN_PASSWORD = "enlighten-secret"


@dataclass(slots=True)
class CloudControl:
    """Switches tests flip to make the cloud misbehave."""

    down: bool = False  # every call answers 503
    mfa: bool = False  # login succeeds without a session_id (MFA on the account)
    garbage_token: bool = False  # /tokens answers 200 "Error in generating Token"
    login_fails: bool = False  # login answers 401 even with the right password


TokenIssuer = Callable[[str, str], str]  # (serial, username) -> raw JWT


class FakeCloud:
    def __init__(
        self,
        control: CloudControl,
        calls: collections.Counter[str],
        issue_token: TokenIssuer,
        username: str = ENLIGHTEN_USERNAME,
        password: str = ENLIGHTEN_PASSWORD,
    ) -> None:
        self.control = control
        self.calls = calls
        self._issue_token = issue_token
        self._username = username
        self._password = password
        self._sessions: dict[str, str] = {}  # session_id -> username

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/login/login.json", self._login)
        app.router.add_post("/tokens", self._tokens)
        return app

    async def _login(self, request: web.Request) -> web.Response:
        self.calls["login"] += 1
        if self.control.down:
            return web.json_response({"message": "Service Unavailable"}, status=503)
        form = await request.post()
        email = str(form.get("user[email]", ""))
        password = str(form.get("user[password]", ""))
        if self.control.login_fails or email != self._username or password != self._password:
            log.info("cloud_login_refused")
            return web.json_response({"message": "Invalid email or password"}, status=401)
        body: dict[str, object] = {
            "message": "success",
            "is_consumer": True,
            "user_id": 1_234_567,
            "user_name": email,
            "first_name": "Sim",
            "manager_token": secrets.token_hex(16),
        }
        if not self.control.mfa:
            session_id = secrets.token_hex(16)
            self._sessions[session_id] = email
            body["session_id"] = session_id
        return web.json_response(body)

    async def _tokens(self, request: web.Request) -> web.Response:
        self.calls["tokens"] += 1
        if self.control.down:
            return web.Response(status=503, text="Service Unavailable")
        try:
            body = json.loads(await request.text())
        except ValueError:
            return web.json_response({"message": "Bad request"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"message": "Bad request"}, status=400)
        session_id = str(body.get("session_id", ""))
        serial = str(body.get("serial_num", ""))
        username = str(body.get("username", ""))
        if self._sessions.get(session_id) != username or not serial:
            return web.json_response({"message": "Unauthorized"}, status=401)
        if self.control.garbage_token:
            return web.Response(text="Error in generating Token", content_type="text/plain")
        return web.Response(text=self._issue_token(serial, username), content_type="text/plain")
