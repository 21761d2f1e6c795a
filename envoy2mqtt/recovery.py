"""Counter state from the broker when the state file is lost (issue 14).

A deleted or corrupt `counters-<serial>.json` must not make a lifetime counter go backwards: the
bridge's own retained state topics still hold the last published values. At start, before anything is
published for the Envoy, they are read once (a short-lived MQTT connection, bounded in time) and handed
to the `CounterGuard`, which continues from them.
"""

from __future__ import annotations

import json
import math
from typing import Any

import structlog

from .config import MqttSettings
from .counters import CounterGuard
from .entities import lifetime_keys
from .mqtt.retained import RetainedReadError, read_retained
from .mqtt.topics import Topics

log = structlog.get_logger(__name__)

_COMPONENTS = ("meter", "inverter", "battery")


def published_lifetimes(prefix: str, messages: dict[str, bytes]) -> dict[tuple[str, str], float]:
    """(device, key) -> value from retained state payloads under `prefix` (`<base>/<envoy>`)."""
    out: dict[tuple[str, str], float] = {}
    for topic, payload in messages.items():
        if not topic.startswith(prefix + "/"):
            continue
        parts = topic[len(prefix) + 1 :].split("/")
        if parts == ["system"]:
            device, component = "system", "system"
        elif len(parts) == 2 and parts[0] in _COMPONENTS:
            device, component = "/".join(parts), parts[0]
        else:
            continue
        try:
            body: Any = json.loads(payload)
        except ValueError:
            continue
        if not isinstance(body, dict):
            continue
        for key in lifetime_keys(component):
            value = body.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                out[(device, key)] = float(value)
    return out


async def recover_counters(
    guard: CounterGuard, settings: MqttSettings, topics: Topics, envoy_id: str, **context: Any
) -> int:
    """When the guard has no state, seed it from the retained states; returns how many counters."""
    if not guard.needs_recovery:
        return 0
    prefix = topics.system(envoy_id).rsplit("/", 1)[0]
    try:
        messages = await read_retained(settings, f"{prefix}/#")
    except RetainedReadError as exc:
        guard.recover({})
        log.warning(
            "counter_recovery_failed",
            detail="no counter state and the broker's retained states could not be read",
            action="counters start from the Envoy's values",
            reason=str(exc),
            **context,
        )
        return 0
    count = guard.recover(published_lifetimes(prefix, messages))
    if count:
        log.warning(
            "counters_recovered_from_broker",
            reason="counter state file missing or unusable",
            action="recovered the last published lifetime values from the broker's retained states",
            counters=count,
            **context,
        )
    return count
