"""The bridge API end to end: `bridge/info` and every request, through a real mosquitto and the daemon."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import Mosquitto
from tests.e2e import Daemon, Watcher, envoy_table, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

BASE = "envoy2mqtt"
_ids = itertools.count(1)


async def _retained(port: int, topic: str) -> dict[str, Any]:
    """What a client subscribing now gets: the retained copy."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                assert message.retain
                assert isinstance(message.payload, bytes)
                answer: dict[str, Any] = json.loads(message.payload)
                return answer
    raise AssertionError(f"nothing retained on {topic}")


class Requester:
    """Publishes requests and waits for the response carrying its transaction."""

    def __init__(self, client: aiomqtt.Client, watcher: Watcher) -> None:
        self.client = client
        self.watcher = watcher

    async def send_raw(self, command: str, payload: bytes, *, retain: bool = False) -> None:
        await self.client.publish(f"{BASE}/bridge/request/{command}", payload, qos=1, retain=retain)

    async def request(self, command: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        transaction = f"t{next(_ids)}"
        await self.send_raw(command, json.dumps({**(body or {}), "transaction": transaction}).encode())
        return await self.response(command, transaction)

    async def response(self, command: str, transaction: Any, timeout: float = 30) -> dict[str, Any]:
        topic = f"{BASE}/bridge/response/{command}"
        found: list[dict[str, Any]] = []

        def arrived() -> bool:
            for event in self.watcher.events:
                if event.topic == topic and event.payload:
                    answer = json.loads(event.payload)
                    if answer.get("transaction") == transaction:
                        assert not event.retain, "responses are not retained"
                        found.append(answer)
                        return True
            return False

        await self.watcher.wait_for(arrived, timeout, f"the response to {command} ({transaction})")
        return found[0]


async def test_every_bridge_request_and_the_info_topic(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with (
        Simulator(SimulatorConfig(profile="metered-1phase-acb")) as sim,
        Watcher(mosquitto.port) as watcher,
        aiomqtt.Client("127.0.0.1", mosquitto.port) as client,
    ):
        envoys = envoy_table(sim, name="Bridge test")
        config = write_config(tmp_path, mosquitto.port, envoys, sim=sim, system_interval=30)
        daemon = Daemon(config, tmp_path / "daemon.log")
        req = Requester(client, watcher)
        # a request someone left retained: a daemon that (re)subscribes must not run it again
        await req.send_raw("health_check", json.dumps({"transaction": "stale"}).encode(), retain=True)
        await daemon.start()
        serial = sim.serial
        secret = sim.enlighten_password

        def ready() -> bool:
            info = watcher.latest.get(f"{BASE}/bridge/info")
            return info is not None and json.loads(info)["envoys"].get(serial, {}).get("available") is True

        await watcher.wait_for(ready, 60, "bridge/info with the Envoy available")
        # -------------------------------------------------------------- bridge/info
        info = await _retained(mosquitto.port, f"{BASE}/bridge/info")
        assert info["version"]
        assert info["started_at"].endswith("Z")
        envoy = info["envoys"][serial]
        assert envoy["name"] == "Bridge test"
        assert envoy["firmware"] == sim.firmware
        assert envoy["auth_mode"] == "token"
        assert envoy["token_type"] == "owner"
        assert envoy["token_expires_at"].endswith("Z")
        assert envoy["cadences"] == {"system": 30, "devices": 60}
        assert info["config"]["mqtt"]["port"] == mosquitto.port
        assert info["config"]["polling"]["system_interval"] == 30
        assert info["config"]["fleet"]["threshold"] == 75
        assert set(info["commands"]) >= {"health_check", "poll", "token/refresh", "discovery/republish"}

        # -------------------------------------------------------------- health_check
        for _ in range(60):
            health = await req.request("health_check")
            if health["data"]["healthy"]:
                break
            await asyncio.sleep(0.5)
        assert health["status"] == "ok"
        assert health["error"] is None
        assert health["data"]["mqtt"] == "connected"
        assert health["data"]["envoys"][serial]["available"] is True
        assert health["data"]["envoys"][serial]["last_error"] is None

        # -------------------------------------------------------------- poll: floors, then a poll now
        refused = await req.request("poll", {"cadence": "devices"})
        assert refused["status"] == "error"
        assert "try again in" in refused["error"]
        assert 1 <= refused["data"]["retry_after"] <= 60
        answer = await req.request("poll", {"envoy": serial})
        for _ in range(3):  # inside the 10 s floor of a scheduled system poll: wait as told
            if answer["status"] == "ok":
                break
            assert 1 <= answer["data"]["retry_after"] <= 10
            await asyncio.sleep(answer["data"]["retry_after"])
            answer = await req.request("poll", {"envoy": "Bridge test", "cadence": "system"})
        assert answer["status"] == "ok", answer
        assert answer["data"] == {"cadence": "system", "polled": [serial]}
        again = await req.request("poll")
        assert again["status"] == "error"
        assert again["data"]["retry_after"] >= 1
        for bad in ({"cadence": "weekly"}, {"envoy": "nope"}, {"envoy": 7}, {"when": "now"}):
            answer = await req.request("poll", bad)
            assert answer["status"] == "error", bad
            assert answer["error"]

        # -------------------------------------------------------------- token/refresh
        cloud_calls = sum(sim.cloud_calls.values())
        answer = await req.request("token/refresh")
        assert answer["status"] == "ok", answer
        refreshed = answer["data"]["refreshed"][serial]
        assert refreshed["token_type"] == "owner"
        assert refreshed["token_expires_at"].endswith("Z")
        assert sum(sim.cloud_calls.values()) > cloud_calls  # a new token from the (fake) Enlighten

        # -------------------------------------------------------------- discovery/republish
        moment = watcher.events[-1].at
        answer = await req.request("discovery/republish")
        assert answer["status"] == "ok"
        assert answer["data"]["configs"] >= 1 + 12  # the gateway and its 12 microinverters
        await watcher.wait_for(
            lambda: len(watcher.since(moment, "homeassistant/device/")) >= answer["data"]["configs"],
            30,
            "every discovery config sent again",
        )

        # -------------------------------------------------------------- log_level
        answer = await req.request("log_level", {"level": "debug"})
        assert answer["data"] == {"level": "debug", "previous": "info"}
        await watcher.wait_for(
            lambda: json.loads(watcher.latest[f"{BASE}/bridge/info"])["log_level"] == "debug",
            15,
            "bridge/info with the new log level",
        )
        await watcher.wait_for(
            lambda: any(line.get("level") == "debug" for line in daemon.log_lines()),
            30,
            "a debug line in the log",
        )
        answer = await req.request("log_level", {"level": "loud"})
        assert answer["status"] == "error"
        await req.request("log_level", {"level": "info"})

        # -------------------------------------------------------------- unknown commands, bad bodies
        answer = await req.request("frobnicate")
        assert answer["status"] == "error"
        assert "unknown command" in answer["error"]
        moment = watcher.events[-1].at
        await req.send_raw("health_check", b"not json")
        await req.send_raw("health_check", b"[1, 2]")
        await req.send_raw("health_check", json.dumps({"transaction": {"a": 1}}).encode())
        await watcher.wait_for(
            lambda: len(watcher.since(moment, f"{BASE}/bridge/response/health_check")) >= 3,
            15,
            "three error responses",
        )
        errors = [
            json.loads(e.payload) for e in watcher.since(moment, f"{BASE}/bridge/response/health_check")
        ]
        assert [e["status"] for e in errors] == ["error"] * 3
        assert all(e["transaction"] is None for e in errors)

        # -------------------------------------------------------------- retained requests are ignored
        # the request left retained before the daemon started reached it on subscribing: no answer
        with pytest.raises(AssertionError, match="timed out"):
            await req.response("health_check", "stale", timeout=1)
        assert "bridge_request_ignored" in daemon.log_text()
        await req.send_raw("health_check", b"", retain=True)  # clear the retained request

        # -------------------------------------------------------------- no secret anywhere
        for event in watcher.events:
            if event.topic.startswith(f"{BASE}/bridge/"):
                text = event.payload.decode()
                assert secret not in text, event.topic
                assert "eyJ" not in text, event.topic  # no JWT
        code, _ = await daemon.terminate()
        assert code == 0
