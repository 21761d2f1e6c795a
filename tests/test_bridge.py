"""The bridge API's routing, validation and responses on their own, against a stand-in for the daemon.

`BridgeControl` is the boundary to the daemon; here a small recording implementation plays it (the
daemon's own, `bridge_control.PollerControl`, runs in tests/test_e2e_bridge.py with real mosquitto).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from envoy2mqtt.bridge import BridgeApi, Cadence, EnvoyStatus, config_summary
from envoy2mqtt.config import EnvoySettings, MqttSettings, Settings
from envoy2mqtt.mqtt.publisher import IncomingMessage, Publisher
from envoy2mqtt.mqtt.topics import Topics

SECRET = "hunter2-very-secret"
TOPICS = Topics("envoy2mqtt", "homeassistant")


def _status(envoy_id: str, **kw: Any) -> EnvoyStatus:
    values: dict[str, Any] = {
        "id": envoy_id,
        "name": f"Envoy {envoy_id}",
        "serial": envoy_id,
        "firmware": "D8.2.4345",
        "part_number": None,
        "auth_mode": "token",
        "token_type": "owner",
        "token_expires_at": 1_800_000_000.0,
        "available": True,
        "ready": True,
        "ready_reason": "ok",
        "last_poll_ok": 1_780_000_000.0,
        "last_error": None,
        "system_interval": 60,
        "device_interval": 300,
    }
    values.update(kw)
    return EnvoyStatus(**values)


class Control:
    """Records what the API asked the daemon to do."""

    def __init__(self) -> None:
        self.statuses = [_status("111"), _status("222", auth_mode="legacy", token_type=None)]
        self.ages: dict[tuple[str, str], float | None] = {}
        self.polled: list[tuple[str, str]] = []
        self.refreshed: list[str] = []
        self.fail_poll: str | None = None
        self.level = "info"

    def envoys(self) -> list[EnvoyStatus]:
        return self.statuses

    def mqtt_connected(self) -> bool:
        return True

    def poll_age(self, envoy: str, cadence: Cadence) -> float | None:
        return self.ages.get((envoy, cadence))

    async def poll_now(self, envoy: str, cadence: Cadence) -> None:
        if self.fail_poll:
            raise RuntimeError(self.fail_poll)
        self.polled.append((envoy, cadence))

    async def refresh_token(self, envoy: str) -> None:
        self.refreshed.append(envoy)

    async def republish_discovery(self) -> int:
        return 7

    def set_log_level(self, level: str) -> str:
        previous, self.level = self.level, level
        return previous


def _api(control: Control, **kw: Any) -> BridgeApi:
    settings = Settings(
        mqtt=MqttSettings(password=SECRET),  # type: ignore[arg-type]
        envoy=[EnvoySettings(host="envoy.local", enlighten_password=SECRET)],  # type: ignore[arg-type]
    )
    publisher = Publisher(settings.mqtt, TOPICS)  # never connected: responses are returned, not sent
    return BridgeApi(settings, publisher, TOPICS, control, started_at=1_780_000_000.0, **kw)


async def _ask(api: BridgeApi, command: str, body: Any = None) -> dict[str, Any]:
    payload = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return await api.handle(command, payload)


async def test_health_check_echoes_the_transaction() -> None:
    answer = await _ask(_api(Control()), "health_check", {"transaction": "abc"})
    assert answer["status"] == "ok"
    assert answer["error"] is None
    assert answer["transaction"] == "abc"
    assert answer["data"]["healthy"] is True
    assert set(answer["data"]["envoys"]) == {"111", "222"}


async def test_poll_inside_the_floor_is_refused_with_the_wait() -> None:
    control = Control()
    control.ages[("111", "devices")] = 20.0
    answer = await _ask(_api(control), "poll", {"envoy": "111", "cadence": "devices"})
    assert answer["status"] == "error"
    assert answer["data"]["retry_after"] == 40
    assert "try again in 40 s" in answer["error"]
    assert control.polled == []
    control.ages[("111", "system")] = 12.0
    answer = await _ask(_api(control), "poll", {"envoy": "Envoy 111"})
    assert answer["status"] == "ok"
    assert control.polled == [("111", "system")]


async def test_poll_all_and_a_failing_poll() -> None:
    control = Control()
    answer = await _ask(_api(control), "poll", {})
    assert answer["data"] == {"cadence": "system", "polled": ["111", "222"]}
    control.fail_poll = "the Envoy did not answer"
    answer = await _ask(_api(control), "poll", {"envoy": "222"})
    assert answer["status"] == "error"
    assert answer["error"] == "poll failed: 222: the Envoy did not answer"


@pytest.mark.parametrize(
    ("command", "body", "fragment"),
    [
        ("frobnicate", {}, "unknown command 'frobnicate'"),
        ("poll", b"{not json", "not JSON"),
        ("poll", [1, 2], "must be a JSON object"),
        ("poll", {"cadence": "weekly"}, "cadence must be"),
        ("poll", {"envoy": "333"}, "no Envoy '333'"),
        ("poll", {"every": 5}, "unknown key 'every'"),
        ("health_check", {"transaction": [1]}, "transaction must be"),
        ("log_level", {"level": "trace"}, "level must be one of"),
        ("log_level", {}, "level must be one of"),
    ],
)
async def test_bad_requests_get_an_error_response(command: str, body: Any, fragment: str) -> None:
    answer = await _ask(_api(Control()), command, body)
    assert answer["status"] == "error"
    assert fragment in answer["error"]


async def test_token_refresh_only_for_token_envoys_and_never_the_token() -> None:
    control = Control()
    answer = await _ask(_api(control), "token/refresh")
    assert control.refreshed == ["111"]
    assert answer["data"]["refreshed"]["111"] == {
        "token_type": "owner",
        "token_expires_at": "2027-01-15T08:00:00Z",
    }
    answer = await _ask(_api(control), "token/refresh", {"envoy": "222"})
    assert answer["status"] == "error"
    assert "token authentication" in answer["error"]


async def test_token_refresh_has_a_floor_per_envoy() -> None:
    control = Control()
    now = [1000.0]
    api = _api(control, monotonic=lambda: now[0])
    assert (await _ask(api, "token/refresh"))["status"] == "ok"
    now[0] += 120
    answer = await _ask(api, "token/refresh", {"envoy": "111"})
    assert answer["status"] == "error"
    assert answer["data"]["retry_after"] == 480
    assert control.refreshed == ["111"]
    now[0] += 480
    assert (await _ask(api, "token/refresh"))["status"] == "ok"
    assert control.refreshed == ["111", "111"]


async def test_log_level_and_republish() -> None:
    control = Control()
    api = _api(control)
    answer = await _ask(api, "log_level", {"level": "DEBUG"})
    assert answer["data"] == {"level": "debug", "previous": "info"}
    assert control.level == "debug"
    answer = await _ask(api, "discovery/republish")
    assert answer["data"] == {"configs": 7}


async def test_a_secret_in_an_error_is_redacted_and_info_holds_none() -> None:
    control = Control()
    control.fail_poll = "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    answer = await _ask(_api(control), "poll", {"envoy": "111"})
    assert "eyJhbGciOiJIUzI1NiJ9" not in json.dumps(answer)
    api = _api(control)
    info = json.dumps(api.info())
    assert SECRET not in info
    assert "envoy.local" not in info  # no host (a URL may carry credentials)
    summary = config_summary(api.settings)
    assert summary["mqtt"]["authenticated"] is False
    assert summary["envoys"] == 1


async def test_retained_requests_are_not_served() -> None:
    api = _api(Control())
    api.on_message(IncomingMessage("envoy2mqtt/bridge/request/health_check", b"{}", retain=True))
    assert api.in_flight == 0
    api.on_message(IncomingMessage("envoy2mqtt/bridge/request/health_check", b"{}", retain=False))
    assert api.in_flight == 1
    await api.close()
