"""The real-time cadence in the read planner: one more consumer with its own freshness.

With `meters` the real-time consumer reads `/ivp/meters/readings` every real-time interval; the body it
puts in the shared `BodyStore` is young enough for the system cadence, which then reuses it instead of
reading the CTs again. With `livedata` it reads `/ivp/livedata/status` (plus the stream switch, which is
a write and not planned: about six an hour). `check --plan` and the daemon build the same planner.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from envoy2mqtt.envoy import endpoints
from envoy2mqtt.model import Features
from envoy2mqtt.readers import DEVICE, READERS, SYSTEM, Need, Reader

from .source import RealtimeSource
from .stream import RENEW_AFTER, STATUS_PATH

REALTIME = "realtime"
STREAM_RENEWALS_PER_HOUR = 3600 / RENEW_AFTER


def _with_realtime(reader: Reader) -> Reader:
    plain = reader.needs

    def needs(features: Features) -> Mapping[str, Need]:
        base = plain(features)
        return {**base, REALTIME: Need(REALTIME)} if base else base

    return dataclasses.replace(reader, needs=needs)


LIVEDATA_READER = Reader(STATUS_PATH, "livedata", lambda features: {REALTIME: Need(REALTIME)})


def realtime_readers(
    source: RealtimeSource | None, readers: tuple[Reader, ...] = READERS
) -> tuple[Reader, ...]:
    """The catalog with the real-time consumer's needs added for `source` (unchanged for None)."""
    if source == "meters":
        return tuple(_with_realtime(r) if r.path == endpoints.METERS_READINGS else r for r in readers)
    if source == "livedata":
        return (*readers, LIVEDATA_READER)
    return readers


def cadence_intervals(
    system_interval: float, device_interval: float, source: RealtimeSource | None, realtime_interval: float
) -> dict[str, float]:
    """The planner's consumers, in tick order: the real-time one first, so its body serves the others."""
    intervals = {SYSTEM: system_interval, DEVICE: device_interval}
    if source is None:
        return intervals
    return {REALTIME: realtime_interval, **intervals}
