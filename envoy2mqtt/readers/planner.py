"""The read planner: which endpoints one cycle of a consumer reads, given the bodies already held.

`Planner(features, intervals)` turns the readers' needs into `Step`s per consumer (`steps(consumer)`).
A `BodyStore` holds the last good body of every endpoint with the monotonic time it was read. Running a
cycle (`CycleReader.run(consumer)`) walks the steps: a held body young enough for the step is reused,
anything else is read through the client (once: a body read earlier in the cycle, or by another
consumer moments ago, is young and reused). A body counts as young while its age is at most nine
tenths of the interval of the cadence its `Need` names, so a body read one interval ago at the same
phase of a fixed-rate cadence is due again.

`Planner.requests_per_hour()` replays an hour of cadences on a virtual clock with the same rule
(`check --plan` prints it); the daemon and `check` both run their cycles through `CycleReader`.

Adding a consumer (a real-time cadence, a control's read-back) is one more entry in `intervals` and a
`Need` for it in the readers it uses; `CycleReader.run("realtime")` then reads what it needs and
reuses what the other cadences read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from envoy2mqtt.errors import BadEnvoyData, EnvoyHttpError, short_error
from envoy2mqtt.model import Features

from .catalog import HELD, READERS, Need, Reader

log = structlog.get_logger(__name__)

FRESH_SHARE = 0.9  # a body is young while its age is at most this share of the interval its Need names


@dataclass(frozen=True, slots=True)
class Step:
    """One endpoint in a consumer's cycle."""

    reader: Reader
    need: Need
    max_age: float  # seconds; inf for HELD (any held body)

    @property
    def path(self) -> str:
        return self.reader.path


class BodyStore:
    """The last good body of each endpoint and when it was read (monotonic seconds)."""

    def __init__(self) -> None:
        self._bodies: dict[str, tuple[Any, float]] = {}

    def put(self, path: str, body: Any, read_at: float) -> None:
        self._bodies[path] = (body, read_at)

    def hold(self, bodies: Mapping[str, Any]) -> None:
        """Bodies of unknown age (the probe's): reused only where any held body will do."""
        for path, body in bodies.items():
            if body is not None:
                self._bodies[path] = (body, -math.inf)

    def body(self, path: str) -> Any:
        held = self._bodies.get(path)
        return None if held is None else held[0]

    def age(self, path: str, now: float) -> float:
        held = self._bodies.get(path)
        return math.inf if held is None else now - held[1]

    def forget(self, path: str) -> None:
        """The held body is no longer good (the next cycle that needs it reads it)."""
        self._bodies.pop(path, None)

    def clear(self) -> None:
        self._bodies.clear()


@dataclass(frozen=True, slots=True)
class Cycle:
    """What one cycle of a consumer got: every step's body (None: failed or not held) and what it read."""

    consumer: str
    bodies: Mapping[str, Any]
    read: tuple[str, ...]  # the paths requested from the Envoy this cycle, in order
    fresh: frozenset[str]  # paths with a body fresh enough for their step (read now or reused)

    def production_read(self, readers: Iterable[Reader] = READERS) -> bool:
        """At least one production source gave a body fresh enough, and the Envoy answered at least one
        of the reads this cycle made (a held body does not hide an Envoy that answers nothing)."""
        if self.read and all(self.bodies.get(path) is None for path in self.read):
            return False
        return any(
            r.production and self.bodies.get(r.path) is not None and r.path in self.fresh for r in readers
        )


class Planner:
    """Per consumer, the steps of a cycle on this Envoy: the readers it needs and how fresh."""

    def __init__(
        self, features: Features, intervals: Mapping[str, float], readers: Iterable[Reader] = READERS
    ) -> None:
        self.features = features
        self.intervals = dict(intervals)
        self.readers = tuple(readers)
        self._steps: dict[str, tuple[Step, ...]] = {}
        for consumer in self.intervals:
            steps = []
            for reader in self.readers:
                need = reader.needs(features).get(consumer)
                if need is not None:
                    steps.append(Step(reader, need, self.max_age(need)))
            self._steps[consumer] = tuple(steps)

    @property
    def consumers(self) -> tuple[str, ...]:
        return tuple(self.intervals)

    def max_age(self, need: Need) -> float:
        if need.within == HELD:
            return math.inf
        return self.intervals[need.within] * FRESH_SHARE

    def steps(self, consumer: str) -> tuple[Step, ...]:
        return self._steps.get(consumer, ())

    def due(self, step: Step, store: BodyStore, now: float, bodies: Mapping[str, Any]) -> bool:
        """Whether this step must read its endpoint now (else the held body, or None, is used)."""
        if step.need.within == HELD:
            return False
        fallback_for = step.need.fallback_for
        if fallback_for is not None and bodies.get(fallback_for) is not None:
            return False
        return store.age(step.path, now) > step.max_age

    def requests_per_hour(
        self, hours: int = 2, *, ok: Callable[[str], bool] = lambda path: True
    ) -> dict[str, dict[str, float]]:
        """Per consumer, per endpoint: the reads an hour at these intervals, in steady state.

        Replays `hours` hours on a virtual clock, every consumer ticking from 0 at its interval in the
        order of `intervals`, and counts the reads of the last hour. `ok(path)` says whether a read
        succeeds (a fallback reads only when its primary fails).
        """
        store = BodyStore()
        counts: dict[str, dict[str, float]] = {c: {} for c in self.intervals}
        horizon = 3600.0 * hours
        ticks = sorted(
            (n * interval, order, consumer)
            for order, (consumer, interval) in enumerate(self.intervals.items())
            for n in range(int(horizon // interval) + 1)
            if n * interval < horizon
        )
        for now, _, consumer in ticks:
            bodies: dict[str, Any] = {}
            for step in self.steps(consumer):
                if self.due(step, store, now, bodies):
                    if now >= horizon - 3600.0:
                        per_path = counts[consumer]
                        per_path[step.path] = per_path.get(step.path, 0.0) + 1
                    if ok(step.path):
                        store.put(step.path, True, now)
                        bodies[step.path] = True
                    else:
                        bodies[step.path] = None
                else:
                    bodies[step.path] = store.body(step.path)
        return counts

    def describe(self) -> list[str]:
        """`check --plan`: per cadence, the endpoints the daemon reads on this Envoy and requests per hour."""
        per_hour = self.requests_per_hour()
        lines = []
        for consumer, interval in self.intervals.items():
            steps = self.steps(consumer)
            total = sum(per_hour[consumer].values())
            lines.append(f"{consumer} cadence (every {interval:g} s): {total:g} requests/hour")
            for step in steps:
                count = per_hour[consumer].get(step.path, 0.0)
                if step.need.within == HELD:
                    how = "reuses the last body read (never read on this cadence)"
                elif step.need.fallback_for is not None:
                    how = f"only when {step.need.fallback_for} fails"
                elif step.need.within == consumer:
                    how = "read every cycle" if count else "reused from another cadence's read"
                else:
                    interval_named = self.intervals[step.need.within]
                    how = f"at most once per {step.need.within} interval ({interval_named:g} s)"
                lines.append(f"  {step.path:<32} {count:>4g}/h  {how}")
        return lines


Fetch = Callable[[str], Awaitable[Any]]


class CycleReader:
    """Runs cycles through the client for one Envoy: reuse or read each step, log each failing endpoint once.

    `fetch(path)` is the client's `get_body`. Authentication and unreachable errors propagate (the
    whole cycle fails); an endpoint that answers an error or a broken body is logged once per problem,
    counted by `on_error`, and gives None while the other endpoints still flow.
    """

    def __init__(
        self,
        planner: Planner,
        store: BodyStore,
        fetch: Fetch,
        monotonic: Callable[[], float],
        *,
        label: str = "",
        on_error: Callable[[str, BaseException], None] | None = None,
        on_duration: Callable[[str, float], None] | None = None,
    ) -> None:
        self.planner = planner
        self.store = store
        self._fetch = fetch
        self._monotonic = monotonic
        self._log = log.bind(envoy=label) if label else log
        self._on_error = on_error
        self._on_duration = on_duration
        self._failing: dict[str, str] = {}  # path -> the problem logged for it

    async def run(self, consumer: str) -> Cycle:
        bodies: dict[str, Any] = {}
        read: list[str] = []
        fresh: set[str] = set()
        for step in self.planner.steps(consumer):
            now = self._monotonic()
            if self.planner.due(step, self.store, now, bodies):
                read.append(step.path)
                body = await self._read(step.path, consumer)
                if body is not None:
                    self.store.put(step.path, body, self._monotonic())
                    fresh.add(step.path)
                bodies[step.path] = body
            else:
                bodies[step.path] = self.store.body(step.path)
                if step.need.within != HELD and self.store.age(step.path, now) <= step.max_age:
                    fresh.add(step.path)
        return Cycle(consumer, bodies, tuple(read), frozenset(fresh))

    async def _read(self, path: str, consumer: str) -> Any:
        started = time.perf_counter()
        try:
            body = await self._fetch(path)
        except (EnvoyHttpError, BadEnvoyData) as exc:  # EnvoyNotFound is an EnvoyHttpError
            if self._on_error is not None:
                self._on_error(path, exc)
            # Once per endpoint and reason: several endpoints failing in turn must not log every cycle.
            problem = f"{path}: {short_error(exc)}"
            if self._failing.get(path) != problem:
                self._failing[path] = problem
                self._log.warning("endpoint_skipped", cadence=consumer, problem=problem)
            return None
        finally:
            if self._on_duration is not None:
                self._on_duration(path, time.perf_counter() - started)
        self._failing.pop(path, None)
        return body
