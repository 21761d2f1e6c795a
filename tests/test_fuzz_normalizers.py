"""Fuzz every normalizer with mutated real bodies: whatever an Envoy sends, what we publish stays valid.

Sources: every endpoint body of every shared capture (``../shared/envoy-captures``, skipped when absent)
and of the simulator's generated profiles (so the fuzzing runs on a fresh clone too), read through the
simulator's own sources exactly as it would serve them.

For each endpoint, hypothesis picks a source that has it and mutates its body: keys removed or renamed,
values replaced by other JSON types, numbers turned into strings, NaN / ±Infinity, negative, huge and
out-of-range integers, containers emptied, truncated or wrapped, and whole bodies replaced by a truncated
JSON text, an HTML error page, an ``{"error": ...}`` document or a bare scalar. The mutated body replaces
the original everywhere it is used: in the probe (``detect_features``), in ``RawSystemData`` and in
``RawDeviceData``; the normalizers then run with the original features (data goes bad after a good probe)
and with the features the mutated probe found. Asserted for every reading:

* no exception escapes ``detect_features`` / ``normalize_system`` / ``normalize_meters`` /
  ``normalize_devices``;
* every key of ``payload()`` is a key of the entity table (``envoy2mqtt/entities.py``), ``phases`` aside;
* ``number`` / ``integer`` keys are int or float (int for ``integer``), never bool, never NaN or infinite,
  or None; ``bool`` keys are bool or None; text and time keys are str or None; enum keys are one of the
  options; list keys are lists of str; the same for every per-phase value;
* no negative value for a lifetime counter (``Entity.lifetime``);
* the payload is JSON-encodable with ``allow_nan=False``.

Runs:

* default suite: ``DEFAULT_EXAMPLES`` examples per endpoint, derandomized (the same examples on every run,
  so CI does not flake on a new find); the whole file takes well under 60 s;
* dedicated run, random and long: ``ENVOY2MQTT_FUZZ_EXAMPLES=10000 ./scripts/test
  tests/test_fuzz_normalizers.py`` (or ``.venv/bin/python bench/fuzz.py``, which prints examples, time and
  failures per endpoint). Any failure prints the falsifying source and body; fix the normalizer and add the
  body to ``tests/test_normalize_malformed.py`` or a quirk test.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envoy2mqtt.clock import SYSTEM_CLOCK
from envoy2mqtt.entities import TABLES, Entity
from envoy2mqtt.envoy import endpoints as ep
from envoy2mqtt.envoy.firmware import parse_info
from envoy2mqtt.errors import BadEnvoyData
from envoy2mqtt.model import PHASE_NAMES, EnvoyInfo, Features, RawDeviceData, RawSystemData
from envoy2mqtt.normalize import detect_features, normalize_devices, normalize_meters, normalize_system
from envoy2mqtt.normalize.features import usable_body
from envoy2mqtt.normalize.quirks import production_from_html
from envoy2mqtt.readers import raw_device_data, raw_system_data
from envoy2mqtt.simulator.replay import CaptureSource
from envoy2mqtt.simulator.responses import NOT_FOUND_HTML, SERVER_ERROR_HTML, UNAUTHORIZED_HTML, EnvoySource
from envoy2mqtt.simulator.simtime import SimulatedTime
from envoy2mqtt.simulator.site import PROFILES, GeneratedSite
from tests.conftest import capture_folders

DEFAULT_EXAMPLES = 150
FUZZ_EXAMPLES = int(os.environ.get("ENVOY2MQTT_FUZZ_EXAMPLES", "0") or 0)


def fuzz_settings(examples: int | None = None) -> settings:
    """Derandomized and modest by default; `ENVOY2MQTT_FUZZ_EXAMPLES=N` (or `examples`): N random ones."""
    count = examples or FUZZ_EXAMPLES
    return settings(
        max_examples=count or DEFAULT_EXAMPLES,
        derandomize=not count,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


# Every body the normalizers read (the probe endpoints plus the readings of the CTs).
ENDPOINTS: tuple[str, ...] = (*ep.PROBE_ENDPOINTS, ep.METERS_READINGS)
# ...and the HTML page of firmware < 3.9 (a text body: its own mutations, see `html_mutated`).
FUZZ_ENDPOINTS: tuple[str, ...] = (*ENDPOINTS, ep.PRODUCTION_HTML)


def probe_bodies(bodies: Mapping[str, Any]) -> dict[str, Any]:
    """What the client's probe hands `detect_features`: the HTML page only without JSON production."""
    probe = {p: b for p, b in bodies.items() if p in ep.PROBE_ENDPOINTS}
    json_production = any(usable_body(p, probe.get(p)) for p in ep.JSON_PRODUCTION_ENDPOINTS)
    if not json_production and ep.PRODUCTION_HTML in bodies:
        probe[ep.PRODUCTION_HTML] = bodies[ep.PRODUCTION_HTML]
    return probe


# ------------------------------------------------------------------------------------------ sources


@dataclass(frozen=True, eq=False)
class Source:
    name: str
    info: EnvoyInfo
    bodies: Mapping[str, Any]  # endpoint path -> parsed JSON of a 200 answer
    features: Features


def _read_source(name: str, source: EnvoySource) -> Source | None:
    info_answer = source.respond("/info", "")
    try:
        info = parse_info(info_answer.body.decode(errors="replace"))
    except BadEnvoyData:  # a capture without a usable /info is not a fuzz source
        return None
    bodies: dict[str, Any] = {}
    for path in FUZZ_ENDPOINTS:
        bare, _, query = path.partition("?")
        answer = source.respond(bare, query)
        if answer.status != 200:
            continue
        if path == ep.PRODUCTION_HTML:
            page = answer.body.decode(errors="replace")
            if production_from_html(page) is not None:
                bodies[path] = page
            continue
        try:
            bodies[path] = json.loads(answer.body)
        except ValueError:
            continue
    return Source(name, info, bodies, detect_features(info, probe_bodies(bodies)))


@functools.cache
def sources() -> tuple[Source, ...]:
    time = SimulatedTime(SYSTEM_CLOCK, live=False)
    found: list[Source] = []
    for profile in PROFILES:
        source = _read_source(f"profile:{profile}", GeneratedSite(profile, time))
        if source is not None:
            found.append(source)
    for folder in capture_folders():
        source = _read_source(folder.name, CaptureSource(folder, time))
        if source is not None:
            found.append(source)
    return tuple(found)


def sources_with(endpoint: str) -> list[Source]:
    return [s for s in sources() if endpoint in s.bodies]


def source_named(name: str) -> Source:
    return next(s for s in sources() if s.name == name)


# ------------------------------------------------------------------------------------------ mutations

Path_ = tuple[str | int, ...]

SPECIAL_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    -0.0,
    1e-300,
    -1e9,
    1e15,
    1e16,
    1e308,
    -1e308,
    math.nan,
    math.inf,
    -math.inf,
    2**31,
    2**32 - 4,
    2**53 + 1,
    2**63,
    -(2**63),
    10**30,
    10**400,
    "",
    "0",
    "12.5",
    "NaN",
    "Infinity",
    "-Infinity",
    "true",
    "null",
    "<html>",
    [],
    {},
    [1, 2],
    {"x": 1},
    [None],
]
SCALARS = st.one_of(
    st.sampled_from(SPECIAL_VALUES),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
)
WEIRD = st.one_of(
    SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=6), SCALARS, max_size=3)
)

WHOLE_BODIES: list[Any] = [
    NOT_FOUND_HTML,
    UNAUTHORIZED_HTML,
    SERVER_ERROR_HTML.format(status=503),
    "",
    b"\x00\xff",
    {"error": "404 - Not Found"},
    {"status": 401, "error": "", "info": "Authentication required", "moreInfo": ""},
    None,
    [],
    {},
    0,
    math.nan,
    True,
]

OPERATIONS = (
    "delete",
    "rename",
    "replace",
    "stringify",
    "negate",
    "huge",
    "nan",
    "wrap",
    "empty",
    "halve",
)


def all_paths(body: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every node of a JSON tree, the root included, depth first."""
    out: list[Path_] = [prefix]
    if isinstance(body, dict):
        for key, value in body.items():
            out.extend(all_paths(value, (*prefix, key)))
    elif isinstance(body, list):
        for index, value in enumerate(body):
            out.extend(all_paths(value, (*prefix, index)))
    return out


def _resolve(body: Any, path: Path_) -> tuple[bool, Any, Any]:
    """(found, parent, value) of `path`; parent is None at the root."""
    parent: Any = None
    node = body
    for step in path:
        in_dict = isinstance(node, dict) and isinstance(step, str) and step in node
        in_list = isinstance(node, list) and isinstance(step, int) and step < len(node)
        if not (in_dict or in_list):
            return False, None, None
        parent, node = node, node[step]
    return True, parent, node


def _mutate_value(value: Any, operation: str, draw: Callable[[Any], Any]) -> Any:
    if operation == "replace":
        return draw(WEIRD)
    if operation == "stringify":
        return str(value) if not isinstance(value, str) else value + "x"
    if operation == "negate":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if value else -1
        return -1
    if operation == "huge":
        return draw(st.sampled_from([2**64, -(2**64), 1e300, -1e300, 10**19, 4294967292]))
    if operation == "nan":
        return draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    if operation == "wrap":
        return draw(st.sampled_from([[value], {"value": value}]))
    if operation == "empty":
        return type(value)() if isinstance(value, dict | list | str) else None
    if operation == "halve":
        if isinstance(value, list):
            return value[: len(value) // 2]
        if isinstance(value, dict):
            keys = list(value)[: len(value) // 2]
            return {k: value[k] for k in keys}
        return value
    raise AssertionError(operation)


def apply(body: Any, path: Path_, operation: str, draw: Callable[[Any], Any]) -> Any:
    """`body` with one mutation at `path` (in place where possible); the new body."""
    found, parent, value = _resolve(body, path)
    if not found:
        return body
    if not path:  # the root
        if operation in ("delete", "rename"):
            return draw(st.sampled_from(WHOLE_BODIES))
        return _mutate_value(value, operation, draw)
    step = path[-1]
    if operation == "delete":
        del parent[step]
        return body
    if operation == "rename":
        if isinstance(parent, dict):
            assert isinstance(step, str)
            renamed = draw(st.sampled_from([step.upper(), step + "_", step[:-1], " " + step, ""]))
            parent[renamed] = parent.pop(step)
        else:
            parent.append(parent.pop(step))  # a list: move the element to the end
        return body
    parent[step] = _mutate_value(value, operation, draw)
    return body


def truncated_text(body: Any, draw: Callable[[Any], Any]) -> Any:
    """The body's JSON text cut short: the parsed rest when it still parses, else the raw text."""
    text = json.dumps(body, indent=2)
    cut = draw(st.integers(min_value=0, max_value=max(0, len(text) - 1)))
    try:
        return json.loads(text[:cut])
    except ValueError:
        return text[:cut]


HTML_NUMBERS = st.one_of(
    st.sampled_from(["0", "-0", "-1", "1e999", "NaN", "inf", "", ".", "1.2.3", "99999999999999999999999999"]),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=8),
)
HTML_UNITS = st.sampled_from(
    ["W", "kW", "MW", "GW", "Wh", "kWh", "MWh", "GWh", "", "mW", "TWh", "KWH", "w h"]
)
_HTML_VALUE_CELL = re.compile(r"<td>\s*[-\d.]+\s*[kMG]?Wh?\s*</td>")


def html_mutated(draw: Callable[[Any], Any], page: str) -> Any:
    """One hostile variant of firmware 3.x's HTML production page."""
    choice = draw(st.integers(min_value=0, max_value=9))
    if choice == 0:
        return draw(st.sampled_from(WHOLE_BODIES))
    if choice == 1:
        return page[: draw(st.integers(min_value=0, max_value=len(page)))]
    if choice == 2:
        return draw(st.text(max_size=400))
    if choice == 3:  # rows removed or their labels changed
        return re.sub(
            r"Currently|Today|Past Week|Since Installation",
            lambda _: draw(st.sampled_from(["", "Yesterday", "Past  Week", "TODAY", "Currently"])),
            page,
        )
    return _HTML_VALUE_CELL.sub(lambda _: f"<td> {draw(HTML_NUMBERS)} {draw(HTML_UNITS)}</td>", page)


@functools.cache
def _template(source_name: str, endpoint: str) -> tuple[str, tuple[Path_, ...]]:
    """The JSON text (fast to copy by parsing) and every node path of one original body."""
    body = source_named(source_name).bodies[endpoint]
    return json.dumps(body), tuple(all_paths(body))


@st.composite
def mutated(draw: Callable[[Any], Any], source_name: str, endpoint: str) -> Any:
    """One hostile variant of the named source's body for `endpoint`."""
    body = source_named(source_name).bodies[endpoint]
    if endpoint == ep.PRODUCTION_HTML:
        return html_mutated(draw, body)
    choice = draw(st.integers(min_value=0, max_value=19))
    if choice == 0:
        return draw(st.sampled_from(WHOLE_BODIES))
    if choice == 1:
        return truncated_text(body, draw)
    text, paths = _template(source_name, endpoint)
    new = json.loads(text)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        new = apply(new, draw(st.sampled_from(paths)), draw(st.sampled_from(OPERATIONS)), draw)
    return new


# ------------------------------------------------------------------------------------------ checks

KIND_TYPES: dict[str, tuple[type, ...]] = {
    "number": (int, float),
    "integer": (int,),
    "bool": (bool,),
    "text": (str,),
    "time": (str,),
}


def check_value(entity: Entity, value: Any, where: str) -> None:
    if value is None:
        return
    if entity.kind in KIND_TYPES:
        assert isinstance(value, KIND_TYPES[entity.kind]), f"{where}: {value!r} is not {entity.kind}"
        if entity.kind in ("number", "integer"):
            assert not isinstance(value, bool), f"{where}: bool {value!r} for a number"
            assert isinstance(value, int | float)
            number = float(value)
            assert math.isfinite(number), f"{where}: {value!r} is not finite"
            if entity.lifetime:
                assert number >= 0, f"{where}: negative lifetime counter {value!r}"
    elif entity.kind == "enum":
        assert value in entity.options, f"{where}: {value!r} is not one of {entity.options}"
    elif entity.kind == "list":
        assert isinstance(value, list), f"{where}: {value!r} is not a list"
        assert all(isinstance(item, str) for item in value), f"{where}: {value!r} is not a list of str"


def check_payload(component: str, payload: dict[str, Any]) -> None:
    """The contract's JSON types for every key of one state payload (see the module docstring)."""
    json.dumps(payload, allow_nan=False)
    table = {e.key: e for e in TABLES[component]}
    for key, value in payload.items():
        where = f"{component}.{key}"
        if key == "phases":
            assert isinstance(value, dict), f"{where}: {value!r} is not an object"
            for phase, values in value.items():
                assert phase in PHASE_NAMES, f"{where}: phase {phase!r}"
                assert isinstance(values, dict), f"{where}.{phase}: {values!r}"
                for sub, number in values.items():
                    assert sub in table, f"{where}.{phase}: unknown key {sub!r}"
                    assert table[sub].phased, f"{where}.{phase}: {sub} is not a phased key"
                    check_value(table[sub], number, f"{where}.{phase}.{sub}")
            continue
        assert key in table, f"{where}: not a contract key"
        check_value(table[key], value, where)


def raw_data(bodies: Mapping[str, Any]) -> tuple[RawSystemData, RawDeviceData]:
    """Every body handed over, polled or not: the normalizers must cope with anything they get."""
    return raw_system_data(bodies), raw_device_data(bodies)


def normalize_and_check(info: EnvoyInfo, features: Features, bodies: Mapping[str, Any]) -> int:
    """Run every normalizer on `bodies` and check every payload; the number of payloads checked."""
    system, devices = raw_data(bodies)
    payloads: list[tuple[str, dict[str, Any]]] = [
        ("system", normalize_system(system, info, features).payload())
    ]
    payloads += [("meter", m.payload()) for m in normalize_meters(system, features)]
    readings = normalize_devices(devices, features)
    payloads += [("inverter", r.payload()) for r in readings.inverters]
    payloads += [("battery", r.payload()) for r in readings.batteries]
    serials = [r.serial for r in readings.inverters] + [r.serial for r in readings.batteries]
    assert all(isinstance(serial, str) and serial for serial in serials), serials
    for component, payload in payloads:
        check_payload(component, payload)
    return len(payloads)


def fuzz_once(source: Source, endpoint: str, body: Any) -> None:
    bodies = dict(source.bodies)
    bodies[endpoint] = body
    features = detect_features(source.info, probe_bodies(bodies))
    normalize_and_check(source.info, source.features, bodies)
    normalize_and_check(source.info, features, bodies)


def make_fuzzer(endpoint: str, config: settings, seen: dict[str, int] | None = None) -> Callable[[], None]:
    """A hypothesis test for one endpoint; `seen` counts the examples it ran (bench/fuzz.py)."""
    candidates = [s.name for s in sources_with(endpoint)]

    @config
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(candidates), label="source")
        body = data.draw(mutated(name, endpoint), label="body")
        if seen is not None:
            seen[endpoint] = seen.get(endpoint, 0) + 1
        fuzz_once(source_named(name), endpoint, body)

    return fuzz


# ------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("endpoint", FUZZ_ENDPOINTS)
def test_fuzz_endpoint(endpoint: str) -> None:
    if not sources_with(endpoint):
        pytest.skip(f"no source serves {endpoint}")
    make_fuzzer(endpoint, fuzz_settings())()


def test_sources_are_real() -> None:
    """The fuzzing starts from real bodies: every endpoint is served by a generated profile, with data."""
    profiles = [s for s in sources() if s.name.startswith("profile:")]
    assert len(profiles) == len(PROFILES)
    for endpoint in ENDPOINTS:
        assert any(endpoint in s.bodies for s in profiles), endpoint
    iq = next(s for s in profiles if s.name == "profile:metered-3phase-iq")
    assert iq.features.production_ct
    assert iq.features.iq_batteries
    assert iq.features.phase_count == 3
    if capture_folders():
        assert len(sources()) == len(PROFILES) + len(capture_folders())


@pytest.mark.parametrize("source", [pytest.param(s, id=s.name) for s in sources()])
def test_unmutated_sources_pass_the_checks(source: Source) -> None:
    """The checks hold on the original bodies, and they see real payloads (not vacuously true)."""
    checked = normalize_and_check(source.info, source.features, source.bodies)
    assert checked >= 1
    if source.name.startswith("profile:"):
        system, _ = raw_data(source.bodies)
        assert (
            normalize_system(system, source.info, source.features).payload()["production_power"] is not None
        )


@pytest.mark.parametrize(
    ("component", "payload"),
    [
        ("system", {"production_power": math.nan}),
        ("system", {"production_power": "12"}),
        ("system", {"production_power": True}),
        ("system", {"inverters_count": 1.5}),
        ("system", {"production_energy_lifetime": -1}),
        ("system", {"battery_state": "exploding"}),
        ("system", {"no_such_key": 1}),
        ("system", {"phases": {"l1": {"production_power": math.inf}}}),
        ("system", {"phases": {"l4": {"production_power": 1}}}),
        ("inverter", {"producing": "true"}),
        ("meter", {"status_flags": [1]}),
    ],
)
def test_checks_reject_contract_violations(component: str, payload: dict[str, Any]) -> None:
    """The checker itself fails on each kind of violation the fuzzing looks for."""
    with pytest.raises((AssertionError, ValueError)):
        check_payload(component, payload)


def test_mutations_change_bodies() -> None:
    """Every operation really mutates: the fuzzing does not run on unchanged copies."""
    body = {"a": 1, "b": [1, 2], "c": {"d": "x"}}
    for operation in OPERATIONS:
        for path in (("a",), ("b",), ("c",), ("c", "d"), ()):
            changed = apply(copy.deepcopy(body), path, operation, lambda _strategy: "<drawn>")
            if operation == "halve" and path in (("a",), ("c", "d")):
                continue  # halving a scalar leaves it alone
            assert changed != body, (operation, path)
