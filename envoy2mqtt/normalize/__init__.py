"""Pure functions: raw endpoint JSON in, frozen readings out. Every firmware quirk lives here."""

from __future__ import annotations

from .devices import normalize_devices
from .features import detect_features
from .meters import normalize_meters
from .system import normalize_system

__all__ = ["detect_features", "normalize_devices", "normalize_meters", "normalize_system"]
