"""Small typed readers for untrusted Envoy JSON: every lookup in the normalizers goes through here.

None of these raise. A value that is missing, of the wrong type, not finite or out of range comes back as
``None``; the caller decides whether that is worth a problem line. Problems are collected in a
:class:`Problems` list so a normalizer can record "why is this null" without raising.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from envoy2mqtt.clock import iso_utc

# An epoch later than this is garbage (year 2200); earlier than 2001 is an unset clock.
_EPOCH_MIN = 978_307_200
_EPOCH_MAX = 7_258_118_400
# Any JSON number beyond this magnitude is a corrupt field, not a measurement.
_HUGE = 1e15


class Problems:
    """An ordered, de-duplicated list of short reasons."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[str] = []

    def add(self, reason: str) -> None:
        if reason not in self._items:
            self._items.append(reason)

    def extend(self, reasons: Iterable[str]) -> None:
        for reason in reasons:
            self.add(reason)

    def tuple(self) -> tuple[str, ...]:
        return tuple(self._items)

    def __len__(self) -> int:
        return len(self._items)


def as_mapping(obj: object) -> Mapping[str, Any] | None:
    return obj if isinstance(obj, Mapping) else None


def as_list(obj: object) -> Sequence[Any] | None:
    """A JSON array (list or tuple), never a string."""
    return obj if isinstance(obj, list | tuple) else None


def mappings(obj: object) -> list[Mapping[str, Any]]:
    """The dict items of a JSON array; anything else is dropped."""
    items = as_list(obj)
    if items is None:
        return []
    return [item for item in items if isinstance(item, Mapping)]


def is_error_body(obj: object) -> bool:
    """`{"error": ...}` answered with HTTP 200, or the 401 JSON legacy firmware sends."""
    body = as_mapping(obj)
    if body is None:
        return False
    if "error" in body and len(body) <= 2:
        return True
    return body.get("status") == 401 and "info" in body


def to_number(value: object) -> float | None:
    """A finite JSON number; bools, strings, NaN, infinities and absurd magnitudes are None.

    Numeric strings are rejected on purpose: the Envoy sends numbers, and a string means the body
    is not what we think it is (except dates in /inventory.json, see `to_epoch`).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        result = float(value)
    except (OverflowError, ValueError):  # int too large for a float
        return None
    if not math.isfinite(result) or abs(result) > _HUGE:
        return None
    return result


def number(obj: object, key: str) -> float | None:
    """`obj[key]` as a finite number, or None."""
    body = as_mapping(obj)
    if body is None:
        return None
    return to_number(body.get(key))


def path_number(obj: object, *keys: str) -> float | None:
    """`obj[k1][k2]...` as a finite number, or None."""
    current: object = obj
    for key in keys:
        body = as_mapping(current)
        if body is None:
            return None
        current = body.get(key)
    return to_number(current)


def text(obj: object, key: str) -> str | None:
    body = as_mapping(obj)
    if body is None:
        return None
    value = body.get(key)
    return value if isinstance(value, str) else None


def flag(obj: object, key: str) -> bool | None:
    """A JSON boolean; the strings "true"/"false" some endpoints send are accepted too."""
    body = as_mapping(obj)
    if body is None:
        return None
    value = body.get(key)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def to_epoch(value: object) -> float | None:
    """Seconds since the epoch from an int or a digit string (inventory.json dates are strings)."""
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped.isdigit() or len(stripped) > 12:
            return None
        value = int(stripped)
    seconds = to_number(value)
    if seconds is None or not _EPOCH_MIN <= seconds <= _EPOCH_MAX:
        return None
    return seconds


def iso_time(value: object) -> str | None:
    seconds = to_epoch(value)
    return None if seconds is None else iso_utc(seconds)


def round_value(value: float | None, digits: int = 3) -> float | None:
    """Round to at most `digits` decimals; integral values become ints for clean JSON."""
    if value is None or not math.isfinite(value):
        return None
    rounded = round(value, digits)
    if rounded == int(rounded) and abs(rounded) < 2**53:
        return int(rounded)
    return rounded


def scaled(value: float | None, divisor: float, digits: int = 3) -> float | None:
    """Milli-units to units (`real_power_mw`, `*INmV`, `*INmA`, `*mHz`)."""
    return None if value is None else round_value(value / divisor, digits)


def lifetime(value: float | None, what: str, problems: Problems) -> float | None:
    """A lifetime energy counter: never negative in what we publish."""
    if value is not None and value < 0:
        problems.add(f"{what}: negative lifetime counter {round_value(value)}")
        return None
    return round_value(value)


def mean(values: Iterable[float]) -> float | None:
    items = list(values)
    return sum(items) / len(items) if items else None


def count(value: float | None) -> int | None:
    """A non-negative integer count."""
    if value is None or value < 0 or value != int(value):
        return None
    return int(value)
