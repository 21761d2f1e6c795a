"""`envoy2mqtt capture`: the redacted dump users attach to bug reports, and the simulator replaying it.

The round trip is the proof: capture a simulator with the real CLI, serve the folder with a second
simulator, run `envoy2mqtt check --json` against both, and get the same normalized readings up to the
redacted serial numbers. Nothing identifying or secret survives in the folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from envoy2mqtt.cli import EXIT_CONFIG, EXIT_OK
from envoy2mqtt.dump import Redactor, capture_name
from envoy2mqtt.envoy import endpoints
from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import CAPTURES
from tests.test_cli import config_for, run_cli

pytestmark = pytest.mark.timeout(120)

# Replayed from the shared captures (skipped when ../shared is absent): token and legacy firmware, CTs,
# ACB and IQ batteries, a network page with real MAC addresses.
SHARED = [
    "7.6.175",
    "7.6.175_with_cts_3phase",
    "8.2.4382_ACB",
    "8.2.127_with_3cts_and_battery_split",
    "5.0.62",
]
VOLATILE_GATEWAY = ("last_poll_ok", "token_expires_at", "poll_duration")
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+")
MAC = re.compile(r"\b[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}\b")


def _sources() -> list[Any]:
    params: list[Any] = [
        pytest.param(SimulatorConfig(profile=p), id=p)
        for p in ("metered-3phase-iq", "metered-1phase-acb", "legacy-unmetered")
    ]
    for name in SHARED:
        marks = (
            []
            if (CAPTURES / name).is_dir()
            else [pytest.mark.skip(reason=f"../shared capture {name} absent")]
        )
        params.append(pytest.param(SimulatorConfig(capture_dir=CAPTURES / name), id=name, marks=marks))
    return params


def _serials(doc: dict[str, Any]) -> list[str]:
    """Every serial a check document names, in document order (the order both documents share)."""
    found = [doc["gateway"]["serial"], *doc["inverters"], *doc["batteries"]]
    for payload in doc["meters"].values():
        if isinstance(payload.get("serial"), str):
            found.append(payload["serial"])
    return found


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without what legitimately differs: addresses, times of the run, serial numbers.

    Readings keyed by serial become the sorted list of their payloads (the fake serials need not sort
    like the real ones); the meters, keyed by CT type, are compared as they are.
    """
    out = {k: v for k, v in doc.items() if k not in ("envoy", "inverters", "batteries")}
    out["gateway"] = {k: v for k, v in doc["gateway"].items() if k not in (*VOLATILE_GATEWAY, "serial")}
    for member in ("inverters", "batteries"):
        out[member] = sorted(json.dumps(v, sort_keys=True) for v in doc[member].values())
    return out


def _folder_text(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(folder.iterdir()) if p.is_file())


@pytest.mark.parametrize("sim_config", _sources())
async def test_the_simulator_replays_a_capture_of_the_simulator(
    sim_config: SimulatorConfig, tmp_path: Path
) -> None:
    output = tmp_path / "capture"
    async with Simulator(sim_config) as original:
        config = config_for(original, tmp_path)
        captured = await run_cli("capture", "--config", str(config), "--output", str(output))
        assert captured.code == EXIT_OK, captured.err
        assert f"replay it with: envoy2mqtt simulate {output}" in captured.out
        before = await run_cli("check", "--json", "--config", str(config))
        assert before.code == EXIT_OK, before.err
        token_files = list((tmp_path / "state" / "tokens").glob("*.json"))
        tokens = [json.loads(p.read_text()).get("token", "") for p in token_files]
        real_serial = original.serial

    # the layout the simulator serves: info, one file per endpoint, <name>_log.json with the status
    assert (output / "info").is_file()
    assert json.loads((output / "info_log.json").read_text())["code"] == 200
    for path in endpoints.PROBE_ENDPOINTS:
        assert (output / f"{capture_name(path)}_log.json").is_file(), path

    async with Simulator(SimulatorConfig(capture_dir=output)) as replay:
        assert replay.firmware == original.firmware
        assert replay.serial != real_serial
        assert len(replay.serial) == len(real_serial)
        replay_config = config_for(replay, tmp_path, name="replay.toml")
        after = await run_cli("check", "--json", "--config", str(replay_config))
        assert after.code == EXIT_OK, after.err

    doc_before, doc_after = json.loads(before.out), json.loads(after.out)
    real, fake = _serials(doc_before), _serials(doc_after)
    assert len(real) == len(fake) == len(set(fake)), "two serials were redacted to one"
    for serial in real:
        if len(serial) >= 6:
            assert serial not in fake, f"serial {serial} was not redacted"
    assert _comparable(doc_after) == _comparable(doc_before)

    # nothing identifying or secret is left in the folder
    text = _folder_text(output)
    for serial in real:
        if len(serial) >= 6:
            assert not re.search(rf"(?<![0-9A-Za-z]){serial}(?![0-9A-Za-z])", text), serial
    assert not JWT.search(text)
    for token in tokens:
        assert token
        assert token not in text
    assert all(mac.startswith("02:00:00:00:") for mac in MAC.findall(text)), MAC.findall(text)
    emails = re.findall(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", text)
    assert all(email.endswith("@example.com") for email in emails), emails
    assert original.enlighten_password not in text + captured.both


async def test_capture_of_a_network_page_keeps_distinct_macs_distinct(tmp_path: Path) -> None:
    source = CAPTURES / "7.6.175"
    if not (source / "home").is_file():
        pytest.skip("../shared capture 7.6.175 absent")
    real_macs = {m.lower() for m in MAC.findall((source / "home").read_text())}
    assert len(real_macs) >= 2
    async with Simulator(SimulatorConfig(capture_dir=source)) as sim:
        config = config_for(sim, tmp_path)
        result = await run_cli("capture", "--config", str(config), "--output", str(tmp_path / "out"))
        assert result.code == EXIT_OK, result.err
    home = (tmp_path / "out" / "home").read_text()
    fakes = {m.lower() for m in MAC.findall(home)}
    assert len(fakes) == len(real_macs)
    assert not fakes & real_macs
    assert json.loads(home)  # still valid JSON


async def test_capture_picks_the_envoy_by_name_and_rejects_unknown_names(tmp_path: Path) -> None:
    async with Simulator(SimulatorConfig(profile="legacy-unmetered")) as sim:
        config = config_for(sim, tmp_path, envoy_extra='name = "garage"')
        wrong = await run_cli(
            "capture", "--config", str(config), "--envoy", "attic", "-o", str(tmp_path / "x")
        )
        assert wrong.code == EXIT_CONFIG
        assert "'attic' matches no [[envoy]]" in wrong.err
        right = await run_cli(
            "capture", "--config", str(config), "--envoy", "garage", "-o", str(tmp_path / "y")
        )
        assert right.code == EXIT_OK, right.err
        assert "captured 23 endpoints of garage" in right.out
        assert (tmp_path / "y" / "production.json").is_file()


# ------------------------------------------------------------------------------------------ Redactor


def test_redactor_maps_each_serial_consistently_and_keeps_its_length() -> None:
    redactor = Redactor()
    redactor.learn(
        {
            "serial_num": "122301234561",
            "devices": [{"serialNumber": "482219000001"}, {"sn": 202250012345}],
            "serial_nums": {"ABC123456789": {}},
        }
    )
    text = redactor.text(
        '{"a": "122301234561", "b": 202250012345, "c": "482219000001-x", "d": "1223012345610", '
        '"e": "ABC123456789", "f": "122301234561"}'
    )
    data = json.loads(text)
    assert data["a"] == data["f"] == redactor.serials["122301234561"]
    assert data["a"] != "122301234561"
    assert len(data["a"]) == 12
    assert data["b"] == int(redactor.serials["202250012345"])
    assert data["c"] == redactor.serials["482219000001"] + "-x"
    assert data["d"] == "1223012345610"  # a longer number that merely contains a serial is not a serial
    assert data["e"] == redactor.serials["ABC123456789"]
    assert len(set(redactor.serials.values())) == len(redactor.serials)


def test_redactor_removes_tokens_cookies_emails_and_macs() -> None:
    redactor = Redactor()
    token = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiIxMjMifQ.c2lnbmF0dXJl"
    text = redactor.text(
        f"Bearer {token}; sessionId=0123456789abcdef0123456789abcdef; mail owner@home.example.org, "
        "OWNER@home.example.org and other@x.io; mac 00:1D:C0:7F:B6:3B, 00-1d-c0-7f-b6-3b, 60:E8:5B:AB:9D:64"
    )
    assert token not in text
    assert "0123456789abcdef0123456789abcdef" not in text
    assert "owner@" not in text.lower()
    assert "other@x.io" not in text
    assert "00:1D:C0" not in text
    assert "60:E8:5B" not in text
    macs = MAC.findall(text)
    assert macs[0] == macs[1] != macs[2]
    emails = re.findall(r"user\d+@example\.com", text)
    assert emails[0] == emails[1] != emails[2]
