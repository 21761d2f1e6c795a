"""Pure functions: raw endpoint JSON in, frozen readings out. Every firmware quirk lives here."""

from __future__ import annotations

from .features import detect_features

__all__ = ["detect_features"]
