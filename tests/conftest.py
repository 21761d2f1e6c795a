"""Shared fixtures: the shared captures, free ports, a private mosquitto broker per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (  # re-exported: tests import them from here
    CAPTURES,
    ROOT,
    Mosquitto,
    capture_folders,
    free_port,
    mosquitto_binary,
    wait_port,
)

__all__ = [
    "CAPTURES",
    "ROOT",
    "Mosquitto",
    "capture_folders",
    "capture_params",
    "free_port",
    "mosquitto",
    "mosquitto_binary",
    "require_capture",
    "wait_port",
]


def capture_params() -> list[object]:
    """Parametrize over the shared captures; one skipped param when ../shared is absent."""
    folders = capture_folders()
    if not folders:
        return [pytest.param(None, marks=pytest.mark.skip(reason="../shared/envoy-captures is absent"))]
    return [pytest.param(p, id=p.name) for p in folders]


def require_capture(name: str) -> Path:
    path = CAPTURES / name
    if not path.is_dir():
        pytest.skip(f"../shared/envoy-captures/{name} is absent")
    return path


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
