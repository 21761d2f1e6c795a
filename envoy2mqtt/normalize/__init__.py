"""Pure functions: raw endpoint JSON in, frozen readings out. Every firmware quirk lives here."""

from __future__ import annotations

from .features import detect_features
from .system import normalize_system

__all__ = ["detect_features", "normalize_system"]
