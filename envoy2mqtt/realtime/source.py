"""Which endpoint feeds the real-time cadence of one Envoy, and why (`check` prints the reason).

- `meters` (`/ivp/meters/readings`): every Envoy with CTs; one request gives every CT per phase.
- `livedata` (`/ivp/livedata/status`): firmware 7+ with IQ Batteries, an IQ System Controller
  (Enpower) or an IQ Meter Collar; site flows and battery charge in one request, after the stream
  is enabled.
- `auto` prefers livedata on such sites (it also carries the battery charge, and battery power where
  no storage CT exists), else meters; CT-less Envoys without that hardware have no real-time source at
  all: their microinverters report every 5 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from envoy2mqtt.errors import EnvoyError, TokenError
from envoy2mqtt.model import EnvoyInfo, Features
from envoy2mqtt.normalize._values import mappings, text

from .stream import STATUS_PATH

RealtimeSource = Literal["meters", "livedata"]
LIVEDATA_FIRMWARE = (7,)
_LIVEDATA_HARDWARE = {
    "ENCHARGE": "IQ Batteries",
    "ENPOWER": "an IQ System Controller",
    "COLLAR": "an IQ Meter Collar",
}
_POWER_CTS = ("production", "net-consumption", "total-consumption")


@dataclass(frozen=True, slots=True)
class SourceChoice:
    source: RealtimeSource | None  # None: no real-time on this Envoy
    reason: str


def livedata_hardware(features: Features, ensemble_inventory: object) -> list[str]:
    """What on this site makes `/ivp/livedata/status` worth reading (empty: nothing)."""
    found = []
    types = {text(group, "type") for group in mappings(ensemble_inventory)}
    for kind, name in _LIVEDATA_HARDWARE.items():
        if (
            kind in types
            or (kind == "ENCHARGE" and features.iq_batteries)
            or (kind == "ENPOWER" and features.enpower)
        ):
            found.append(name)
    return found


def livedata_candidate(info: EnvoyInfo, features: Features, ensemble_inventory: object) -> bool:
    """Worth probing `/ivp/livedata/status` once: firmware 7+ with the hardware it reports on."""
    return info.version >= LIVEDATA_FIRMWARE and bool(livedata_hardware(features, ensemble_inventory))


def choose_source(
    setting: str,
    info: EnvoyInfo,
    features: Features,
    ensemble_inventory: object,
    livedata_answers: bool,
) -> SourceChoice:
    """The source for `setting` ("auto", "meters", "livedata"); `livedata_answers`: the probe read it."""
    cts = [ct for ct in features.ct_meters if ct in _POWER_CTS]
    hardware = livedata_hardware(features, ensemble_inventory)
    livedata_ok = info.version >= LIVEDATA_FIRMWARE and bool(hardware) and livedata_answers
    if setting in ("auto", "livedata") and livedata_ok:
        why = (
            "realtime.source = livedata"
            if setting == "livedata"
            else f"firmware {info.firmware} with " + " and ".join(hardware)
        )
        return SourceChoice(
            "livedata", f"{why}: /ivp/livedata/status gives site flows and battery charge in one request"
        )
    if setting in ("auto", "meters") and cts:
        why = "realtime.source = meters" if setting == "meters" else "CTs installed"
        return SourceChoice(
            "meters", f"{why}: /ivp/meters/readings gives the {', '.join(cts)} CT power per phase"
        )
    if setting == "livedata":
        if info.version < LIVEDATA_FIRMWARE:
            return SourceChoice(
                None, f"/ivp/livedata needs firmware 7 or later (this Envoy runs {info.firmware})"
            )
        if not hardware:
            return SourceChoice(
                None,
                "/ivp/livedata reports on IQ Batteries, an IQ System Controller or a Meter Collar: none found",
            )
        return SourceChoice(None, "/ivp/livedata/status did not answer on this Envoy")
    if setting == "meters":
        return SourceChoice(
            None, "no CTs installed (/ivp/meters lists no enabled production or consumption CT)"
        )
    return SourceChoice(
        None,
        "no CTs and no IQ Batteries / System Controller / Meter Collar: the microinverters report only "
        "every 5 minutes, so there is nothing faster to read",
    )


class _Probe(Protocol):
    async def get_json_once(self, path: str, time_limit: float) -> Any: ...


PROBE_TIME_LIMIT = 15.0


async def probe_source(
    client: _Probe, setting: str, info: EnvoyInfo, features: Features, ensemble_inventory: object
) -> SourceChoice:
    """Choose the source, reading `/ivp/livedata/status` once when it could be the one (one request)."""
    answers = False
    if setting in ("auto", "livedata") and livedata_candidate(info, features, ensemble_inventory):
        try:
            body = await client.get_json_once(STATUS_PATH, PROBE_TIME_LIMIT)
        except (EnvoyError, TokenError):
            body = None
        meters = body.get("meters") if isinstance(body, dict) else None
        answers = isinstance(meters, dict)
    return choose_source(setting, info, features, ensemble_inventory, answers)
