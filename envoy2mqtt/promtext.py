"""Counters, gauges and histograms in the Prometheus text exposition format, version 0.0.4.

The bridge exports a handful of metrics; this module is what it needs of a Prometheus client and no
more, so the daemon does not load prometheus-client (about 1 MB of resident memory with the
wsgiref/http.server/gzip modules it imports). The constructors take the same arguments as the
prometheus-client classes of the same names. The tests read the output with prometheus-client's own
parser, the reference.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

__all__ = ["CollectorRegistry", "Counter", "Gauge", "Histogram", "generate_latest"]

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, math.inf)


def format_value(value: float) -> str:
    """A sample value or bucket bound as Prometheus reads it: `+Inf`, `-Inf`, `NaN` or a float literal."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{_escape_label(value)}"' for name, value in pairs)
    return f"{{{inner}}}" if inner else ""


class CollectorRegistry:
    """The metrics of one bridge; `auto_describe` is accepted for prometheus-client compatibility."""

    def __init__(self, auto_describe: bool = False) -> None:
        self._metrics: list[_Metric[Any]] = []
        self._lock = threading.Lock()

    def register(self, metric: _Metric[Any]) -> None:
        with self._lock:
            if any(known.name == metric.name for known in self._metrics):
                raise ValueError(f"duplicate metric name {metric.name!r} in this registry")
            self._metrics.append(metric)

    def render(self) -> str:
        with self._lock:
            metrics = list(self._metrics)
        return "".join(metric.render() for metric in metrics)


def generate_latest(registry: CollectorRegistry) -> bytes:
    """Every metric of the registry, UTF-8 text format 0.0.4."""
    return registry.render().encode("utf-8")


_Child = TypeVar("_Child")


class _Metric(Generic[_Child]):
    kind: ClassVar[str]
    suffix: ClassVar[str] = ""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        namespace: str = "",
        registry: CollectorRegistry,
    ) -> None:
        full = f"{namespace}_{name}" if namespace else name
        if self.suffix and full.endswith(self.suffix):
            full = full[: -len(self.suffix)]
        if not _METRIC_NAME.fullmatch(full):
            raise ValueError(f"invalid metric name {full!r}")
        for label in labelnames:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__") or label == "le":
                raise ValueError(f"invalid label name {label!r} for {full}")
        self.name = full
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], _Child] = {}
        self._lock = threading.Lock()
        if not self.labelnames:
            self._children[()] = self._new_child()
        registry.register(self)

    def _new_child(self) -> _Child:
        raise NotImplementedError

    def labels(self, *values: object, **named: object) -> _Child:
        """The series for these label values (positional in `labelnames` order, or by name)."""
        if not self.labelnames:
            raise ValueError(f"{self.name} has no labels")
        if values and named:
            raise ValueError("give label values either by position or by name")
        if named:
            if set(named) != set(self.labelnames):
                raise ValueError(f"{self.name} takes the labels {', '.join(self.labelnames)}")
            values = tuple(named[name] for name in self.labelnames)
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes {len(self.labelnames)} label values")
        key = tuple(str(value) for value in values)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self._new_child()
        return child

    def _only(self) -> _Child:
        if self.labelnames:
            raise ValueError(f"{self.name} has labels: use .labels(...)")
        return self._children[()]

    def render(self) -> str:
        family = self.name + self.suffix
        lines = [f"# HELP {family} {_escape_help(self.documentation)}", f"# TYPE {family} {self.kind}"]
        with self._lock:
            children = list(self._children.items())
        for key, child in children:
            lines += self._samples(list(zip(self.labelnames, key, strict=True)), child)
        return "\n".join(lines) + "\n"

    def _samples(self, labels: list[tuple[str, str]], child: _Child) -> list[str]:
        raise NotImplementedError


class _Value:
    def __init__(self) -> None:
        self.value = 0.0
        self._lock = threading.Lock()

    def add(self, amount: float) -> None:
        with self._lock:
            self.value += amount

    def set(self, value: float) -> None:
        with self._lock:
            self.value = float(value)


class _CounterChild(_Value):
    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.add(amount)


class Counter(_Metric[_CounterChild]):
    """A count that only goes up; exposed with the `_total` suffix."""

    kind = "counter"
    suffix = "_total"

    def _new_child(self) -> _CounterChild:
        return _CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)

    def _samples(self, labels: list[tuple[str, str]], child: _CounterChild) -> list[str]:
        return [f"{self.name}_total{_labels(labels)} {format_value(child.value)}"]


class _GaugeChild(_Value):
    def inc(self, amount: float = 1.0) -> None:
        self.add(amount)

    def dec(self, amount: float = 1.0) -> None:
        self.add(-amount)


class Gauge(_Metric[_GaugeChild]):
    """A value that goes up and down."""

    kind = "gauge"

    def _new_child(self) -> _GaugeChild:
        return _GaugeChild()

    def set(self, value: float) -> None:
        self._only().set(value)

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._only().dec(amount)

    def _samples(self, labels: list[tuple[str, str]], child: _GaugeChild) -> list[str]:
        return [f"{self.name}{_labels(labels)} {format_value(child.value)}"]


class _HistogramChild:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)  # per bucket, not cumulative
        self.total = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self.total += value
            for index, bound in enumerate(self.bounds):
                if value <= bound:
                    self.counts[index] += 1
                    break


class Histogram(_Metric[_HistogramChild]):
    """Observations counted into buckets (cumulative `le` buckets, `_count`, `_sum`)."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        namespace: str = "",
        registry: CollectorRegistry,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        bounds = sorted(float(bound) for bound in buckets)
        if len(set(bounds)) != len(bounds) or any(math.isnan(bound) for bound in bounds):
            raise ValueError("histogram buckets must be distinct numbers")
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.bounds = tuple(bounds)
        super().__init__(name, documentation, labelnames, namespace=namespace, registry=registry)

    def _new_child(self) -> _HistogramChild:
        return _HistogramChild(self.bounds)

    def observe(self, value: float) -> None:
        self._only().observe(value)

    def _samples(self, labels: list[tuple[str, str]], child: _HistogramChild) -> list[str]:
        with child._lock:
            counts, total = list(child.counts), child.total
        lines = []
        running = 0
        for bound, count in zip(child.bounds, counts, strict=True):
            running += count
            lines.append(f"{self.name}_bucket{_labels([*labels, ('le', format_value(bound))])} {running}.0")
        lines.append(f"{self.name}_count{_labels(labels)} {running}.0")
        lines.append(f"{self.name}_sum{_labels(labels)} {format_value(total)}")
        return lines
