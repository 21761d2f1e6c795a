"""detect_features: the probe's decisions, on real captures and on hostile bodies."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from envoy2mqtt.envoy import endpoints as ep
from envoy2mqtt.model import EnvoyInfo
from envoy2mqtt.normalize import detect_features
from tests.conftest import capture_params, require_capture
from tests.test_normalize_support import load_capture


def info(version: tuple[int, ...] = (8, 2, 4345), imeter: bool | None = True) -> EnvoyInfo:
    return EnvoyInfo(
        "123456789012", "800-00654-r08", "D" + ".".join(map(str, version)), version, imeter, True
    )


# name -> (metered, ct_meters, phase_count, production_ct, total, net, acb_count, iq, enpower,
#          detailed, inventory)
EXPECTED: dict[str, tuple[Any, ...]] = {
    "3.9.36": (False, (), 1, False, False, False, 0, False, False, False, False),
    "4.2.33": (True, ("production",), 2, True, False, False, 0, False, False, False, False),
    "7.3.466_metered_disabled_cts": (True, (), 1, False, False, False, 0, False, False, False, False),
    "7.6.175_standard": (False, (), 1, False, False, False, 0, False, False, False, False),
    "7.6.175_with_cts_3phase": (
        True,
        ("production", "net-consumption"),
        3,
        True,
        True,
        True,
        0,
        False,
        False,
        False,
        False,
    ),
    "8.1.41": (True, (), 1, True, True, True, 0, True, True, False, False),
    "8.2.127_with_3cts_and_battery_split": (
        True,
        ("production", "net-consumption", "storage"),
        2,
        True,
        True,
        True,
        0,
        True,
        True,
        False,
        False,
    ),
    "8.2.4264_metered_noct": (True, (), 1, False, False, False, 0, False, False, False, False),
    "8.2.4345_with_device_data": (
        True,
        ("production", "net-consumption"),
        1,
        True,
        True,
        True,
        0,
        False,
        True,
        True,
        False,
    ),
    "8.2.4382_ACB": (
        True,
        ("production", "net-consumption"),
        1,
        True,
        True,
        True,
        3,
        True,
        False,
        False,
        False,
    ),
    "8.3.5169_ACB_inventory": (
        True,
        ("production", "net-consumption"),
        1,
        True,
        True,
        True,
        2,
        False,
        False,
        True,
        True,
    ),
    "8.3.5289_modGone": (True, ("production",), 1, True, False, False, 0, False, False, True, False),
    "8.3.5433_tot_is_net_cons": (
        True,
        ("production", "total-consumption"),
        2,
        True,
        True,
        True,
        0,
        False,
        False,
        True,
        True,
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_features_of_captures(name: str) -> None:
    features = load_capture(require_capture(name)).features
    got = (
        features.metered,
        features.ct_meters,
        features.phase_count,
        features.production_ct,
        features.total_consumption,
        features.net_consumption,
        features.acb_count,
        features.iq_batteries,
        features.enpower,
        features.detailed_inverters,
        features.inventory,
    )
    assert got == EXPECTED[name]
    assert features.acb == (features.acb_count > 0)


@pytest.mark.parametrize("folder", capture_params())
def test_every_capture_probes_without_error(folder: Path) -> None:
    capture = load_capture(folder)
    features = capture.features
    assert features.endpoints <= set(capture.bodies) | {ep.METERS_READINGS}
    assert set(features.meter_eids.values()) == set(features.ct_meters)
    assert 1 <= features.phase_count <= 3
    if not features.metered:
        assert not features.ct_meters
        assert not features.production_ct


def test_meter_eids_map_enabled_ct_only() -> None:
    features = load_capture(require_capture("8.3.5433_tot_is_net_cons")).features
    assert dict(features.meter_eids) == {704643328: "production", 704643584: "total-consumption"}


def test_stalled_v1_production_is_not_an_endpoint() -> None:
    """8.2.4264_metered_noct: /api/v1/production says 1583 Wh lifetime, the inverters 32 MWh."""
    capture = load_capture(require_capture("8.2.4264_metered_noct"))
    assert ep.API_V1_PRODUCTION in capture.bodies
    assert ep.API_V1_PRODUCTION not in capture.features.endpoints


def test_broken_all_zero_v1_production_is_not_an_endpoint() -> None:
    capture = load_capture(require_capture("7.3.466_metered_disabled_cts"))
    assert ep.API_V1_PRODUCTION in capture.bodies
    assert ep.API_V1_PRODUCTION not in capture.features.endpoints


def test_unmetered_v1_production_is_kept_even_when_zero() -> None:
    """Fw 3.x answers all zeros right after boot: that is a glitch, not a broken endpoint."""
    body = {"wattHoursToday": 0, "wattHoursSevenDays": 0, "wattHoursLifetime": 0, "wattsNow": 0}
    features = detect_features(info((3, 9, 36), None), {ep.API_V1_PRODUCTION: body})
    assert ep.API_V1_PRODUCTION in features.endpoints


def test_device_data_over_the_limit_is_not_detailed() -> None:
    devices: dict[str, Any] = {
        str(i): {"devName": "pcu", "sn": f"{i:012d}", "active": True, "modGone": False, "channels": []}
        for i in range(50)
    }
    at_limit = detect_features(
        info(), {ep.DEVICE_DATA: {**devices, "deviceCount": 50, "deviceDataLimit": 50}}
    )
    assert at_limit.detailed_inverters
    over = detect_features(info(), {ep.DEVICE_DATA: {**devices, "deviceCount": 51, "deviceDataLimit": 50}})
    assert not over.detailed_inverters
    assert ep.DEVICE_DATA not in over.endpoints
    many = {**devices, "x": {"devName": "pcu", "active": True}, "deviceCount": 51, "deviceDataLimit": 60}
    assert not detect_features(info(), {ep.DEVICE_DATA: many}).detailed_inverters


def test_device_data_counts_only_active_inverters() -> None:
    gone = {
        "1": {"devName": "pcu", "active": False, "modGone": True},
        "deviceCount": 1,
        "deviceDataLimit": 50,
    }
    assert not detect_features(info(), {ep.DEVICE_DATA: gone}).detailed_inverters


def test_acb_needs_percent_full_and_active_count() -> None:
    def storage(**kw: Any) -> dict[str, Any]:
        return {ep.PRODUCTION_JSON: {"production": [], "storage": [{"type": "acb", **kw}]}}

    assert detect_features(info(), storage(activeCount=2, percentFull=30)).acb_count == 2
    assert not detect_features(info(), storage(activeCount=0, percentFull=30)).acb
    assert not detect_features(info(), storage(activeCount=2)).acb


def test_phase_count_from_lines_without_meters() -> None:
    zero = {"wNow": 0, "whLifetime": 0}
    live = {"wNow": 10, "whLifetime": 100}
    body = {"production": [{"type": "eim", "activeCount": 1, "lines": [live, live, zero]}]}
    assert detect_features(info(), {ep.PRODUCTION_JSON: body}).phase_count == 2


def test_metered_when_imeter_missing_but_ct_active() -> None:
    body = {"production": [{"type": "eim", "activeCount": 1, "wNow": 5}]}
    assert detect_features(info((4, 2, 33), None), {ep.PRODUCTION_JSON: body}).metered
    assert not detect_features(info((4, 2, 33), None), {}).metered
    assert not detect_features(info((7, 6, 175), False), {ep.PRODUCTION_JSON: body}).metered


HOSTILE: list[Any] = [
    None,
    "<html><body>Page Not Found</body></html>",
    b"\x00\xff",
    [],
    {},
    [None, 1, "x", [], {"eid": "x"}],
    {"error": "404 - Not Found"},
    {"status": 401, "error": "", "info": "Authentication required", "moreInfo": ""},
    {"production": "nope", "consumption": {"a": 1}, "storage": None},
    {"production": [{"type": "eim", "activeCount": math.nan}], "consumption": [None, 5]},
    {"production": [{"type": "eim", "activeCount": True, "lines": "x"}]},
    [{"eid": 1e300, "state": "enabled", "measurementType": "production", "phaseCount": math.inf}],
    [{"eid": 704643328, "state": "enabled", "measurementType": "production", "phaseCount": "3"}],
    [{"type": "ENCHARGE", "devices": "x"}, {"type": "ENPOWER", "devices": [None]}],
    {"1": {"devName": "pcu", "active": "true"}, "deviceCount": "1", "deviceDataLimit": None},
    math.nan,
    12,
]


@pytest.mark.parametrize("body", HOSTILE)
def test_hostile_bodies_never_raise(body: Any) -> None:
    bodies = dict.fromkeys(ep.PROBE_ENDPOINTS, body)
    features = detect_features(info(), bodies)
    assert 1 <= features.phase_count <= 3
    assert isinstance(features.endpoints, frozenset)


def test_non_mapping_bodies_never_raise() -> None:
    assert detect_features(info(), None).endpoints == frozenset()  # type: ignore[arg-type]
    assert detect_features(info(), [1, 2]).endpoints == frozenset()  # type: ignore[arg-type]
