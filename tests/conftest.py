"""Shared fixtures: the shared captures, free ports, a private mosquitto broker per test."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT.parent / "shared" / "envoy-captures"


def capture_folders() -> list[Path]:
    if not CAPTURES.is_dir():
        return []
    return sorted(p for p in CAPTURES.iterdir() if p.is_dir())


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if not found:
        pytest.fail("mosquitto is not installed: run ./scripts/test, which installs it")
    return found


class Mosquitto:
    """A private broker on a free port that a test can stop and restart (same port, same config)."""

    def __init__(self, workdir: Path, extra_config: str = "", port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.extra_config = extra_config
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        listener = f"listener {self.port} 127.0.0.1\n"
        body = self.extra_config if "listener" in self.extra_config else listener + "allow_anonymous true\n"
        if "listener" not in self.extra_config:
            body += self.extra_config
        self.conf.write_text(body + "persistence false\n")

    def start(self) -> None:
        self.write_config()
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf)],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
