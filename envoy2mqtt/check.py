"""`envoy2mqtt check` and `envoy2mqtt token`: one Envoy, read once, shown to a person or a script."""

from __future__ import annotations

import sys
from typing import Any

from .clock import SYSTEM_CLOCK, iso_utc
from .config import EnvoySettings, Settings
from .envoy import endpoints
from .envoy.client import EnvoyClient
from .errors import EnvoyAuthError, EnvoyError
from .fleet import FleetAnalysis, sample_of
from .gateway import build_gateway_payload
from .model import Features
from .normalize import normalize_devices, normalize_meters, normalize_system
from .readers import DEVICE, SYSTEM, BodyStore, CycleReader, Planner, probe, raw_device_data, raw_system_data
from .realtime.plan import STREAM_RENEWALS_PER_HOUR, cadence_intervals, realtime_readers
from .realtime.source import RealtimeSource, SourceChoice, choose_source, probe_source


async def _legacy_credentials_work(client: EnvoyClient) -> None:
    """The probe treats a 401 as "feature absent"; `check` tells the user their password is wrong.

    Legacy firmware protects the per-inverter endpoint with the `envoy` user: when it was refused during
    the probe, asking again outside the probe raises EnvoyAuthError naming envoy.username/envoy.password.
    Any other failure (404 on old firmware...) keeps meaning "absent".
    """
    try:
        await client.get_json(endpoints.API_V1_INVERTERS)
    except EnvoyAuthError:
        raise
    except EnvoyError:
        return


def read_planner(features: Features, settings: Settings, realtime: RealtimeSource | None = None) -> Planner:
    """The daemon's planner for this Envoy at the configured intervals (what `check --plan` prints);
    `realtime`: the real-time cadence's source when it runs on this Envoy."""
    polling = settings.polling
    intervals = cadence_intervals(
        polling.system_interval, polling.device_interval, realtime, settings.realtime.interval
    )
    return Planner(features, intervals, readers=realtime_readers(realtime))


def realtime_summary(envoy: EnvoySettings, settings: Settings, choice: SourceChoice) -> dict[str, Any]:
    """Which real-time source this Envoy gets and why; whether [realtime] is on for it."""
    enabled = settings.realtime.enabled and envoy.realtime
    return {
        "enabled": enabled,
        "source": choice.source,
        "reason": choice.reason,
        "interval": settings.realtime.interval,
        "runs": enabled and choice.source is not None,
    }


def plan_summary(planner: Planner, firmware_check_interval: float) -> dict[str, Any]:
    """Per cadence: its interval, the endpoints it reads (requests/hour each) and the total."""
    per_hour = planner.requests_per_hour()
    cadences: dict[str, Any] = {}
    for consumer, interval in planner.intervals.items():
        steps = planner.steps(consumer)
        cadences[consumer] = {
            "interval": interval,
            "endpoints": {step.path: per_hour[consumer].get(step.path, 0.0) for step in steps},
            "requests_per_hour": sum(per_hour[consumer].values()),
        }
    info_per_hour = 3600 / firmware_check_interval
    total = sum(c["requests_per_hour"] for c in cadences.values()) + info_per_hour
    return {"cadences": cadences, "firmware_check_per_hour": info_per_hour, "requests_per_hour": total}


async def check_envoy(
    envoy: EnvoySettings, settings: Settings, *, verify_credentials: bool = False
) -> dict[str, Any]:
    """Connect, authenticate, probe, run one cycle of each cadence; the contract's payloads, nothing secret.

    The cycles are the daemon's: the same planner, reusing the probe's bodies where they are fresh
    enough, so `check` reads what the daemon's first cycles read.
    By default a legacy Envoy refusing the inverter endpoint means "feature absent", as in the daemon.
    With `verify_credentials` (the `check` command) that refusal raises EnvoyAuthError instead.
    """
    async with EnvoyClient(envoy, settings.enphase_cloud, settings.token, settings.state_dir) as client:
        clock = SYSTEM_CLOCK
        started = clock.monotonic()
        info = await client.connect()
        probed = await probe(client, label=envoy.label)
        features = probed.features
        present = features.endpoints
        if verify_credentials and info.auth_mode == "legacy" and endpoints.API_V1_INVERTERS not in present:
            await _legacy_credentials_work(client)
        inventory = probed.bodies.get(endpoints.ENSEMBLE_INVENTORY)
        if settings.realtime.enabled and envoy.realtime:
            # as the daemon: one read of /ivp/livedata/status where it could be the source
            choice = await probe_source(client, settings.realtime.source, info, features, inventory)
        else:  # real-time off: no extra request, say what it would pick if livedata answers
            choice = choose_source(settings.realtime.source, info, features, inventory, livedata_answers=True)
        realtime = realtime_summary(envoy, settings, choice)
        planner = read_planner(features, settings, choice.source if realtime["runs"] else None)
        store = BodyStore()
        for path, body in probed.bodies.items():
            store.put(path, body, clock.monotonic())
        reads = CycleReader(planner, store, client.get_body, clock.monotonic, label=envoy.label)
        system_cycle = await reads.run(SYSTEM)
        device_cycle = await reads.run(DEVICE)
        raw_system = raw_system_data(system_cycle.bodies)
        system = normalize_system(raw_system, info, features)
        meters = normalize_meters(raw_system, features)
        devices = normalize_devices(raw_device_data(device_cycle.bodies), features)
        # fleet health as the daemon's first device cycle judges it (one report: no flag yet)
        fleet = FleetAnalysis(settings.fleet).update(
            [sample_of(r) for r in devices.inverters], [sample_of(b) for b in devices.batteries]
        )
        gateway = build_gateway_payload(
            info.serial,
            info,
            features,
            client.auth_status,
            last_poll_ok=clock.time(),
            last_error=None,
            poll_duration=round(clock.monotonic() - started, 3),
        )
        problems = sorted(
            {
                *system.problems,
                *devices.problems,
                *(p for m in meters for p in m.problems),
                *(p for d in (*devices.inverters, *devices.batteries) for p in d.problems),
            }
        )
        return {
            "envoy": envoy.label,
            "features": {
                "endpoints": sorted(features.endpoints),
                "production_ct": features.production_ct,
                "total_consumption": features.total_consumption,
                "net_consumption": features.net_consumption,
                "acb": features.acb,
                "iq_batteries": features.iq_batteries,
                "enpower": features.enpower,
                "detailed_inverters": features.detailed_inverters,
                "inventory": features.inventory,
            },
            "plan": plan_summary(planner, settings.polling.firmware_check_interval),
            "plan_text": planner.describe(),
            "realtime": realtime,
            "gateway": gateway,
            "system": system.payload(),
            "meters": {m.ct_type: m.payload() for m in meters},
            "inverters": {r.serial: r.payload() | fleet.inverter_keys(r.serial) for r in devices.inverters},
            "health": fleet.payload(),
            "batteries": {r.serial: r.payload() for r in devices.batteries},
            "problems": problems,
        }


def render_plan(result: dict[str, Any]) -> str:
    """`check --plan`: per cadence, the endpoints the daemon reads on this Envoy and the requests per hour."""
    if "error" in result:
        return f"{result['envoy']}: FAILED — {result['error']}"
    plan = result["plan"]
    lines = [f"Envoy {result['envoy']}: read plan ({plan['requests_per_hour']:g} requests/hour)", ""]
    lines += [f"  {line}" for line in result["plan_text"]]
    lines.append(f"  firmware check (/info): {plan['firmware_check_per_hour']:g}/h")
    lines.append(f"  {describe_realtime(result['realtime'])}")
    return "\n".join(lines)


def describe_realtime(realtime: dict[str, Any]) -> str:
    """One line: the real-time source this Envoy gets and why (or why none, or that it is off)."""
    source, reason = realtime["source"], realtime["reason"]
    if realtime["runs"]:
        renewals = (
            f", plus {STREAM_RENEWALS_PER_HOUR:g} stream renewals/h (POST /ivp/livedata/stream)"
            if source == "livedata"
            else ""
        )
        return f"real-time: {source} every {realtime['interval']:g} s{renewals} — {reason}"
    if source is None:
        return f"real-time: no source on this Envoy — {reason}"
    return f"real-time: off ([realtime] enabled = false, or realtime = false for this Envoy); it would use {source} — {reason}"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def _table(title: str, rows: dict[str, Any]) -> list[str]:
    if not rows:
        return []
    width = max(len(k) for k in rows)
    return [title, *(f"  {k.ljust(width)}  {_fmt(v)}" for k, v in rows.items()), ""]


def render_text(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"{result['envoy']}: FAILED — {result['error']}"
    lines = [f"Envoy {result['envoy']}: OK", ""]
    gateway = dict(result["gateway"])
    realtime = result["realtime"]
    result = {k: v for k, v in result.items() if k not in ("plan", "plan_text", "realtime")}
    lines += _table("Gateway", gateway)
    features = dict(result["features"])
    features["endpoints"] = list(features["endpoints"])
    features["inverters"] = len(result["inverters"])
    features["batteries"] = len(result["batteries"])
    lines += _table("Features", features)
    lines += _table("System (what the bridge publishes on <base>/<serial>/system)", result["system"])
    for ct, payload in result["meters"].items():
        lines += _table(f"CT meter {ct}", payload)
    inverters = result["inverters"]
    if inverters:
        lines.append(f"Microinverters ({len(inverters)})")
        for serial, payload in inverters.items():
            lines.append(
                f"  {serial}  power {_fmt(payload.get('power'))} W  max {_fmt(payload.get('max_power'))} W  "
                f"producing {_fmt(payload.get('producing'))}  communicating {_fmt(payload.get('communicating'))}"
            )
        lines.append("")
    for serial, payload in result["batteries"].items():
        lines += _table(f"Battery {serial}", payload)
    lines += [describe_realtime(realtime), ""]
    if result["problems"]:
        lines += _table(
            "Data problems (values published as null)",
            {str(i + 1): p for i, p in enumerate(result["problems"])},
        )
    return "\n".join(lines).rstrip()


async def token_command(settings: Settings, action: str, *, show: bool) -> int:
    """Show the stored token's type and expiry, or fetch a new one."""
    worst = 0
    for envoy in settings.envoy:
        async with EnvoyClient(envoy, settings.enphase_cloud, settings.token, settings.state_dir) as client:
            info = await client.connect()
            manager = client.token_manager
            if info.auth_mode != "token" or manager is None:
                print(f"{envoy.label}: firmware {info.firmware} uses legacy digest authentication (no token)")
                continue
            if action == "refresh":
                await manager.force_refresh()
            status = client.auth_status
            expires = iso_utc(status.token_expires_at) if status.token_expires_at is not None else "unknown"
            days = (
                f" ({(status.token_expires_at - SYSTEM_CLOCK.time()) / 86400:.1f} days left)"
                if status.token_expires_at is not None
                else ""
            )
            print(
                f"{envoy.label}: serial {info.serial}, {status.token_type or 'unknown'} token, expires {expires}{days}"
            )
            if not status.ok:
                print(f"  problem: {status.reason}", file=sys.stderr)
                worst = 3
            if show:
                print(f"  token: {await manager.get_token()}")
    return worst
