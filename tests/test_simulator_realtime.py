"""The simulator's real-time side: livedata and its stream switch with expiry, CT readings that move
every second, and the load model (slow, then 503 for a while) switchable at run time."""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from envoy2mqtt.simulator import Simulator, SimulatorConfig
from envoy2mqtt.simulator.cli import add_simulate_arguments, config_from_args
from envoy2mqtt.simulator.livestream import LiveStream
from envoy2mqtt.simulator.load import LoadDecision, LoadModel, LoadSettings


def _no_verify() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_no_verify(), force_close=True)) as s:
        yield s


async def _get(session: aiohttp.ClientSession, sim: Simulator, path: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {sim.issue_token()}"}
    async with session.get(sim.url + path, headers=headers) as response:
        text = await response.text()
        return response.status, json.loads(text) if response.content_type == "application/json" else text


async def _post(session: aiohttp.ClientSession, sim: Simulator, path: str, body: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {sim.issue_token()}"}
    async with session.post(sim.url + path, json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def test_livedata_values_move_only_while_the_stream_is_enabled(session: aiohttp.ClientSession) -> None:
    config = SimulatorConfig(profile="metered-3phase-iq", live=True, time_scale=60, stream_expiry=1.0)
    async with Simulator(config) as sim:
        status, first = await _get(session, sim, "/ivp/livedata/status")
        assert status == 200
        assert first["connection"]["sc_stream"] == "disabled"
        await asyncio.sleep(0.3)
        _, frozen = await _get(session, sim, "/ivp/livedata/status")
        assert frozen["meters"] == first["meters"]  # frozen while the stream is off

        status, answer = await _post(session, sim, "/ivp/livedata/stream", {"enable": 1})
        assert (status, answer) == (200, {"sc_stream": "enabled"})
        _, live = await _get(session, sim, "/ivp/livedata/status")
        assert live["connection"]["sc_stream"] == "enabled"
        assert live["meters"]["last_update"] > first["meters"]["last_update"]
        assert live["meters"]["phase_count"] == 3
        meters = live["meters"]
        balance = meters["pv"]["agg_p_mw"] + meters["grid"]["agg_p_mw"] + meters["storage"]["agg_p_mw"]
        assert abs(meters["load"]["agg_p_mw"] - balance) <= 3  # rounding of each flow to 1 mW

        await asyncio.sleep(1.2)  # past the expiry: the stream switched itself off
        _, lapsed = await _get(session, sim, "/ivp/livedata/status")
        assert lapsed["connection"]["sc_stream"] == "disabled"
        assert sim.stream.enables == 1
        assert sim.requests["POST /ivp/livedata/stream"] == 1

        status, _ = await _post(session, sim, "/ivp/livedata/stream", {"enable": "yes"})
        assert status == 400


async def test_livedata_is_absent_where_a_real_envoy_has_none(session: aiohttp.ClientSession) -> None:
    async with (
        Simulator(SimulatorConfig(profile="legacy-unmetered")) as sim,
        session.get(sim.url + "/ivp/livedata/status") as response,
    ):
        assert response.status in (401, 404)  # digest first; the path does not exist anyway


async def test_ct_readings_move_every_second_in_live_mode(session: aiohttp.ClientSession) -> None:
    async with Simulator(SimulatorConfig(profile="metered-1phase-acb", live=True)) as sim:
        _, first = await _get(session, sim, "/ivp/meters/readings")
        await asyncio.sleep(1.1)
        _, second = await _get(session, sim, "/ivp/meters/readings")
        assert second[0]["timestamp"] > first[0]["timestamp"]
        assert [r["activePower"] for r in first] != [r["activePower"] for r in second]


def test_load_model_slows_down_then_answers_503_for_a_while() -> None:
    model = LoadModel(LoadSettings(limit=1.0, window=10, overload_after=5, busy_for=20, delay_factor=0.5))
    # one request a second: within the limit, never slowed
    assert all(model.admit(float(second)) == LoadDecision() for second in range(1, 60))
    model = LoadModel(LoadSettings(limit=1.0, window=10, overload_after=5, busy_for=20, delay_factor=0.5))
    decisions = []
    for step in range(80):  # four requests a second
        now = step * 0.25
        decisions.append((now, model.admit(now)))
    delays = [d.delay for _, d in decisions if not d.busy]
    assert max(delays) > 0.5  # slower the further above the limit
    first_busy = next(t for t, d in decisions if d.busy)
    assert first_busy >= 5  # only after staying overloaded for `overload_after`
    assert model.busy_periods == 1
    assert model.requests_while_overloaded > 0
    # the 503s last `busy_for`, then a calm client is served normally again
    assert model.admit(first_busy + 19).busy
    assert model.admit(first_busy + 35).busy is False
    assert model.admit(first_busy + 35).delay == 0


def test_load_model_is_off_without_settings() -> None:
    model = LoadModel()
    assert all(model.admit(i * 0.001).delay == 0 for i in range(1000))
    assert model.snapshot(1.0)["limit"] is None


def test_stream_rejects_a_nonsense_expiry() -> None:
    with pytest.raises(ValueError):
        LiveStream(0)


async def test_overload_is_switched_at_run_time_and_cleared(session: aiohttp.ClientSession) -> None:
    async with Simulator(SimulatorConfig(profile="metered-1phase-acb")) as sim:
        faults = sim.url + "/__sim/faults"
        options = {"fault": "overload", "limit": 2, "window": 2, "overload_after": 0.3, "busy_for": 30}
        async with session.post(faults, json=options) as response:
            assert response.status == 200
        statuses = []
        for _ in range(20):
            status, _ = await _get(session, sim, "/ivp/meters/readings")
            statuses.append(status)
        assert 503 in statuses
        async with session.get(sim.url + "/__sim/stats") as response:
            stats = await response.json()
        assert stats["load"]["busy"] is True
        assert stats["recent"][-1][1] == "GET /ivp/meters/readings"
        async with session.post(faults, json={"fault": "clear"}) as response:
            assert response.status == 200
        status, _ = await _get(session, sim, "/ivp/meters/readings")
        assert status == 200
        async with session.post(faults, json={"fault": "overload", "limit": 0}) as response:
            assert response.status == 400
        async with session.post(faults, json={"fault": "overload", "limit": 1, "bogus": 1}) as response:
            assert response.status == 400


def test_cli_options() -> None:
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    config = config_from_args(parser.parse_args(["--stream-expiry", "5", "--load-limit", "0.5"]))
    assert config.stream_expiry == 5
    assert config.load is not None
    assert config.load.limit == 0.5
    assert config_from_args(parser.parse_args([])).load is None
