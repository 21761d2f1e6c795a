"""The daemon's side of the bridge API and of the status page: what the pollers know, and acting on them.

`PollerControl` implements `bridge.BridgeControl` over the daemon's Envoy pollers, its publisher and the
logging setup; `envoy_status` turns one poller into the `EnvoyStatus` that `bridge/info`, the
`health_check` request and the status page all read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .bridge import Cadence, EnvoyStatus, InverterTile
from .errors import EnvoyError
from .logging import set_log_level
from .model import Payload
from .mqtt.publisher import Publisher
from .poller import EnvoyPoller


def _number(payload: Payload | None, key: str) -> float | None:
    value = payload.get(key) if payload else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _tiles(poller: EnvoyPoller) -> tuple[InverterTile, ...]:
    stale: set[Any] = set()
    health = poller.health_payload or {}
    for entry in health.get("inverters_stale") or ():
        if isinstance(entry, dict):
            stale.add(entry.get("serial"))
    tiles = []
    for serial, payload in sorted(poller.inverter_payloads.items()):
        last_report = payload.get("last_report")
        tiles.append(
            InverterTile(
                serial=serial,
                power=_number(payload, "power"),
                max_power=_number(payload, "max_power"),
                relative_output=_number(payload, "relative_output"),
                underperforming=payload.get("underperforming") is True,
                stale=serial in stale,
                last_report=last_report if isinstance(last_report, str) else None,
            )
        )
    return tuple(tiles)


def envoy_status(poller: EnvoyPoller) -> EnvoyStatus:
    """One Envoy as the bridge API and the status page see it (never a secret, never the host)."""
    info = poller.info
    auth = poller.client.auth_status
    token = info is not None and info.auth_mode == "token"
    ready, reason = poller.ready()
    system = poller.system_payload
    on_grid = system.get("on_grid") if system else None
    return EnvoyStatus(
        id=poller.serial or poller.envoy.label,
        name=poller.envoy.name or (f"Envoy {poller.serial}" if poller.serial else poller.envoy.label),
        serial=poller.serial,
        firmware=info.firmware if info else None,
        part_number=info.part_number if info else None,
        auth_mode=info.auth_mode if info else None,
        token_type=auth.token_type if token else None,
        token_expires_at=auth.token_expires_at if token else None,
        available=poller.available,
        ready=ready,
        ready_reason=reason,
        last_poll_ok=poller.health.last_poll_ok,
        last_error=poller.last_error,
        system_interval=poller.polling.system_interval,
        device_interval=poller.polling.device_interval,
        production_power=_number(system, "production_power"),
        consumption_power=_number(system, "consumption_power"),
        net_power=_number(system, "net_power"),
        battery_soc=_number(system, "battery_soc"),
        on_grid=on_grid if isinstance(on_grid, bool) else None,
        health=dict(poller.health_payload or {}),
        inverters=_tiles(poller),
        realtime=poller.realtime.gateway_fields() if poller.realtime is not None else {},
    )


class PollerControl:
    """`BridgeControl` over the daemon's pollers."""

    def __init__(self, pollers: Sequence[EnvoyPoller], publisher: Publisher) -> None:
        self.pollers = pollers
        self.publisher = publisher

    def envoys(self) -> list[EnvoyStatus]:
        return [envoy_status(p) for p in self.pollers]

    def mqtt_connected(self) -> bool:
        return self.publisher.connected.is_set()

    def _poller(self, envoy: str) -> EnvoyPoller:
        for poller in self.pollers:
            if envoy in (poller.serial, poller.envoy.label):
                return poller
        raise EnvoyError(f"no Envoy {envoy!r}")

    def poll_age(self, envoy: str, cadence: Cadence) -> float | None:
        poller = self._poller(envoy)
        started = poller.poll_started.get(cadence)
        return None if started is None else poller.clock.monotonic() - started

    async def poll_now(self, envoy: str, cadence: Cadence) -> None:
        await self._poller(envoy).poll_now(cadence)

    async def refresh_token(self, envoy: str) -> None:
        poller = self._poller(envoy)
        manager = poller.client.token_manager
        if manager is None:
            raise EnvoyError("this Envoy has no token to refresh (not connected yet, or legacy firmware)")
        await manager.force_refresh()
        poller.refresh_gateway()

    async def republish_discovery(self) -> int:
        await self.publisher.republish_all()
        return self.publisher.config_count

    def set_log_level(self, level: str) -> str:
        return set_log_level(level)
