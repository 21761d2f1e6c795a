"""Every firmware quirk of docs/envoy-local-api.md §6 that touches values, one named function each.

Each docstring names the shared capture (`../shared/envoy-captures/<folder>`) that shows the quirk;
`tests/test_normalize_quirks.py` exercises each function on its own and on that capture.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from envoy2mqtt.model import EnvoyInfo

from ._values import as_mapping, mappings, mean, number, text, to_epoch, to_number

# First firmware where total-consumption is overwritten by net-consumption (pyenphase constant).
TOTAL_IS_NET_MIN_VERSION = (8, 3, 5433)
# First firmware where /api/v1/production stalls on a metered Envoy without CTs.
V1_STALLED_MIN_VERSION = (8, 2, 4264)
# Voltages below this share of the strongest channel are an unused phase's induced noise (6 V, 11 V).
_ACTIVE_PHASE_SHARE = 0.5
_UINT32 = 2**32
_INT32_MAX = 2**31


def find_consumption_sections(
    production_json: object,
) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """(total-consumption, net-consumption) sections of production.json `consumption[]`.

    Found by `measurementType`; an entry without it falls back to list order (index 0 total,
    index 1 net), which is what firmware without the key sends: capture `4.2.33` has a single
    `consumption[0]` without `measurementType`. Never trust the order when the key exists.
    """
    body = as_mapping(production_json)
    sections = mappings(body.get("consumption")) if body is not None else []
    total: Mapping[str, Any] | None = None
    net: Mapping[str, Any] | None = None
    untyped: list[tuple[int, Mapping[str, Any]]] = []
    for index, section in enumerate(sections):
        kind = text(section, "measurementType")
        if kind == "total-consumption" and total is None:
            total = section
        elif kind == "net-consumption" and net is None:
            net = section
        elif kind is None:
            untyped.append((index, section))
    for index, section in untyped:
        if index == 0 and total is None:
            total = section
        elif index == 1 and net is None:
            net = section
    return total, net


def find_production_section(production_json: object, kind: str) -> Mapping[str, Any] | None:
    """The `production[]` entry of `type` "eim" or "inverters" (first one)."""
    body = as_mapping(production_json)
    if body is None:
        return None
    for section in mappings(body.get("production")):
        if text(section, "type") == kind:
            return section
    return None


def find_acb_storage(production_json: object) -> Mapping[str, Any] | None:
    """The ACB entry of production.json `storage[]` (type "acb", else the first entry)."""
    body = as_mapping(production_json)
    if body is None:
        return None
    sections = mappings(body.get("storage"))
    for section in sections:
        if text(section, "type") == "acb":
            return section
    return sections[0] if sections else None


def is_active(section: object) -> bool:
    """`activeCount > 0`: the CT or device group is really there (`imeter` alone does not say)."""
    active = number(section, "activeCount")
    return active is not None and active > 0


def total_consumption_is_net(info: EnvoyInfo, total: object, net: object) -> bool:
    """On fw >= 8.3.5433 the total-consumption section carries the net-consumption values.

    Capture `8.3.5433_tot_is_net_cons`: both sections have `whLifetime` 5649402.426 and `wNow`
    428.414, while the total-consumption CT in /ivp/meters/readings delivered 20 MWh. Detected only
    when lifetime and power are both equal, so a later firmware fix switches the repair off.
    """
    if info.version < TOTAL_IS_NET_MIN_VERSION:
        return False
    total_life, net_life = number(total, "whLifetime"), number(net, "whLifetime")
    total_now, net_now = number(total, "wNow"), number(net, "wNow")
    if None in (total_life, net_life, total_now, net_now):
        return False
    return total_life == net_life and total_now == net_now


def repair_total_consumption(net_value: float | None, production_value: float | None) -> float | None:
    """total = net + production: the repair for `total_consumption_is_net` (lifetime, power, per phase).

    Capture `8.3.5433_tot_is_net_cons`: 5649402.426 + 14405465.109 = 20054867.5 Wh, matching the
    total-consumption CT's 20055053 Wh delivered.
    """
    if net_value is None or production_value is None:
        return None
    return net_value + production_value


def daily_counters_are_lifetime_copies(
    today: float | None, last_7_days: float | None, life: float | None
) -> bool:
    """whToday == whLastSevenDays == whLifetime: the daily counters are garbage copies of lifetime.

    Capture `8.3.5433_tot_is_net_cons`: eim production has 14405465.109 in all three. A real first
    day has `whLastSevenDays` 0 (the window excludes today), so it never matches.
    """
    if today is None or last_7_days is None or life is None or life <= 0:
        return False
    return today == life and last_7_days == life


def production_from_inverters_section(production_json: object) -> Mapping[str, Any] | None:
    """Metered Envoy without (enabled) CTs: production comes from the `inverters` section.

    The `eim` section is still there with meaningless values (capture `8.2.4264_metered_noct`: eim
    `whLifetime` 1586 Wh against 32465106 Wh from the inverters; `7.3.466_metered_disabled_cts`:
    eim `activeCount` 0). Used when neither a production CT nor a sane /api/v1/production exists.
    """
    section = find_production_section(production_json, "inverters")
    return section if section is not None and is_active(section) else None


def api_v1_production_is_stalled(info: EnvoyInfo, production_ct: bool) -> bool:
    """fw >= 8.2.4264, metered, no production CT: /api/v1/production stops updating.

    Capture `8.2.4264_metered_noct`: `wattHoursLifetime` 1583 Wh, `wattHoursSevenDays` 1583 Wh,
    while the inverters section reports 32465106 Wh. Such an endpoint is not used at all.
    """
    return info.imeter is True and not production_ct and info.version >= V1_STALLED_MIN_VERSION


def api_v1_production_is_broken(body: object) -> bool:
    """Every `wattHours*` counter is 0: the endpoint is broken (metered Envoy without CTs).

    Capture `7.3.466_metered_disabled_cts`: today, seven days and lifetime are 0 although
    `wattsNow` is 689. A non-dict body is broken too.
    """
    data = as_mapping(body)
    if data is None:
        return True
    counters = [
        to_number(data.get(key)) for key in ("wattHoursToday", "wattHoursSevenDays", "wattHoursLifetime")
    ]
    return all(value is None or value == 0 for value in counters)


def is_boot_zero_production(
    info: EnvoyInfo, now: float | None, today: float | None, life: float | None
) -> bool:
    """FW 3.x answers 200 with all-zero production right after boot: reject the whole block.

    Shown by pyenphase's zero-production test on capture `3.17.3` (same firmware family as our
    `3.9.36` and `3.8.10`). A real site never has a lifetime of exactly 0 next to zero power.
    """
    if info.version >= (4,):
        return False
    return now == 0 and today == 0 and life == 0


def derive_net_energy(consumption: float | None, production: float | None) -> float | None:
    """Net energy today / last 7 days = consumption - production (signed).

    The Envoy reports 0 for the net-consumption `whToday`/`whLastSevenDays` on every metered capture
    (e.g. `7.3.517`: 0 and 0 next to a net lifetime of 8436418 Wh), so they are derived instead.
    """
    if consumption is None or production is None:
        return None
    return consumption - production


def unwrap_uint32_watts(value: float | None) -> float | None:
    """A negative watt value sent as an unsigned 32-bit integer: values >= 2**31 are value - 2**32.

    Capture `8.3.5169_ACB_inventory`: /ivp/pdm/device_data eim `watts.now` 4294967292 (= -4 W,
    its `curr_w` says -4).
    """
    if value is None or value < _INT32_MAX or value >= _UINT32:
        return value
    return value - _UINT32


def from_milli(value: float | None) -> float | None:
    """Milli-units to units: `real_power_mw`, `acVoltageINmV`, `dcCurrentINmA`, `acFrequencyINmHz`...

    Capture `8.2.127_with_3cts_and_battery_split`: `real_power_mw` -136000 is -136 W;
    `8.2.4345_with_device_data`: `acVoltageINmV` 238944 is 238.944 V.
    """
    return None if value is None else value / 1000


def ensemble_power_devices(body: object) -> list[Mapping[str, Any]]:
    """The device list of /ivp/ensemble/power, whose key is literally `"devices:"` (with a colon).

    Every capture with the endpoint, e.g. `8.1.41`: `{"devices:": [{"serial_num": ..., "real_power_mw":
    24000, ...}]}`. A plain `"devices"` key is accepted too in case a firmware fixes the typo.
    """
    data = as_mapping(body)
    if data is None:
        return []
    return mappings(data.get("devices:", data.get("devices")))


def inventory_date(value: object) -> float | None:
    """Dates in /inventory.json are digit strings ("1781988156"); in /ivp/ensemble/inventory ints.

    Capture `8.3.5169_ACB_inventory` (`inventory.json_deleted_1`: `"last_rpt_date": "1781988156"`)
    against `8.2.4382_ACB` (ensemble `"last_rpt_date": 1732092823`). Both become epoch seconds.
    """
    return to_epoch(value)


def device_data_is_published(entry: object) -> bool:
    """A /ivp/pdm/device_data inverter is published only when `active` is true.

    `modGone` is not reliable: capture `8.3.5289_modGone` has removed inverters `active: false,
    modGone: true`, but `8.3.5169_ACB_inventory` has live inverters `active: true, modGone: true`.
    """
    data = as_mapping(entry)
    return data is not None and data.get("active") is True


def mean_phase_voltage(
    aggregate: float | None, channels: Sequence[float | None], phase_count: int
) -> float | None:
    """CT aggregate voltage is the sum of the phases on multi-phase sites: publish the active phases' mean.

    Capture `8.3.5433_tot_is_net_cons` (split phase): aggregate 242.785 V = 121.342 + 121.424 V; the
    third channel reads 0 V. Capture `7.6.175_with_cts_3phase`: channels 235.2, 6.1 and 11.5 V, the last
    two being induced noise on unused phases. A channel counts as active above half the strongest one.
    Without channel data the aggregate is divided by the phase count.
    """
    known = [v for v in channels if v is not None and v > 0]
    if known:
        strongest = max(known)
        return mean(v for v in known if v >= strongest * _ACTIVE_PHASE_SHARE)
    if aggregate is None:
        return None
    if phase_count > 1:
        return aggregate / phase_count
    return aggregate


def phase_lines_in_use(section: object) -> int:
    """How many `lines[]` carry any non-zero value (recent firmware always sends 3, unused ones all 0).

    Capture `8.3.5433_tot_is_net_cons`: 3 lines on a split-phase site, the third all zeros.
    """
    data = as_mapping(section)
    if data is None:
        return 0
    used = 0
    for index, line in enumerate(mappings(data.get("lines"))):
        if any(to_number(v) not in (None, 0) for k, v in line.items() if k != "readingTime"):
            used = index + 1
    return used


# Firmware before 3.9 has no JSON production endpoint: `/production` is an HTML page with a four-row
# table ("Currently 6.63 kW", "Today 53.6 kWh", "Past Week 405 kWh", "Since Installation 133 MWh").
_HTML_ROWS = {
    "currently": "wattsNow",
    "today": "wattHoursToday",
    "past week": "wattHoursSevenDays",
    "since installation": "wattHoursLifetime",
}
_HTML_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
_HTML_ROW = re.compile(
    r"<td[^>]*>\s*(currently|today|past\s+week|since\s+installation)\s*</td>\s*"
    r"<td[^>]*>\s*(-?\d+(?:\.\d+)?)\s*([kmg]?)(wh|w)\s*</td>",
    re.IGNORECASE,
)
_HTML_MAX_CHARS = 200_000  # the page is ~2 kB; never run the pattern over a huge body


def production_from_html(page: object) -> dict[str, float] | None:
    """The values of firmware 3.x's HTML `/production` page in `/api/v1/production`'s keys and units
    (W, Wh), or None when the page has none of them.

    The page rounds to three significant figures ("133 MWh" is 132.5 to 133.5 MWh): the lifetime
    counter moves in steps of up to 1 MWh and is only as good as that.
    """
    if not isinstance(page, str) or len(page) > _HTML_MAX_CHARS:
        return None
    values: dict[str, float] = {}
    for label, amount, prefix, unit in _HTML_ROW.findall(page):
        key = _HTML_ROWS[" ".join(label.lower().split())]
        power_row = key == "wattsNow"
        if power_row != (unit.lower() == "w"):
            continue  # energy in a power row or the reverse: not the page we know
        value = to_number(float(amount) * _HTML_SCALE[prefix.lower()])
        if value is not None:
            values.setdefault(key, value)
    return values or None
