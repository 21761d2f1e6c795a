"""StateFile and ensure_private_dir on a real filesystem."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from envoy2mqtt.state import StateFile, ensure_private_dir


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_missing_file_loads_empty(tmp_path: Path) -> None:
    assert StateFile(tmp_path / "state" / "counters.json").load() == {}
    assert not (tmp_path / "state").exists()  # loading never creates anything


def test_round_trip_with_private_modes(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "counters.json"
    state = StateFile(path)
    data = {"counters": {"x": [1, 2.5, None, "é"]}, "other": True}
    state.save(data)
    assert StateFile(path).load() == data
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["counters.json"]  # no temp file left


def test_save_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    state = StateFile(path)
    state.save({"long": "x" * 10_000})
    state.save({"short": 1})
    assert json.loads(path.read_text()) == {"short": 1}


def test_existing_dir_made_private(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    ensure_private_dir(directory)
    assert mode_of(directory) == 0o700


def test_ensure_private_dir_warns_when_chmod_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    directory.chmod(0o755)

    def refuse(self: Path, mode: int) -> None:
        raise PermissionError("not the owner")

    monkeypatch.setattr(Path, "chmod", refuse)
    with capture_logs() as logs:
        ensure_private_dir(directory)
    assert [entry["log_level"] for entry in logs] == ["warning"]


def test_loose_file_mode_tightened_on_load(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"a": 1}')
    path.chmod(0o644)
    assert StateFile(path).load() == {"a": 1}
    assert mode_of(path) == 0o600


@pytest.mark.parametrize(
    "body",
    [b'{"counters": {"truncated', b"", b"[1, 2, 3]", b'"text"', b"\xff\xfe not utf-8"],
    ids=["truncated", "empty", "list", "string", "binary"],
)
def test_corrupt_file_is_kept_aside(tmp_path: Path, body: bytes) -> None:
    path = tmp_path / "counters.json"
    path.write_bytes(body)
    with capture_logs() as logs:
        assert StateFile(path).load() == {}
    assert [entry["log_level"] for entry in logs] == ["error"]
    assert not path.exists()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("counters.json.corrupt-")]
    assert len(aside) == 1
    assert aside[0].read_bytes() == body  # nothing lost
    # A new save works and does not touch the kept file.
    StateFile(path).save({"fresh": 1})
    assert StateFile(path).load() == {"fresh": 1}
    assert aside[0].read_bytes() == body


def test_second_corrupt_file_in_the_same_second_gets_its_own_name(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    for body in ("{bad", "{worse"):
        path.write_text(body)
        assert StateFile(path).load() == {}
    kept = sorted(p.read_text() for p in tmp_path.iterdir() if ".corrupt-" in p.name)
    assert kept == ["{bad", "{worse"]


def test_unreadable_path_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "counters.json"
    path.mkdir()  # reading a directory fails with an OSError on every platform, even as root
    (path / "inside").write_text("keep me")
    assert StateFile(path).load() == {}
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("counters.json.corrupt-")]
    assert len(aside) == 1
    assert (aside[0] / "inside").read_text() == "keep me"


def test_unserializable_data_leaves_old_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    state = StateFile(path)
    state.save({"a": 1})
    with pytest.raises(TypeError):
        state.save({"a": object()})
    with pytest.raises(ValueError):
        state.save({"a": float("nan")})  # not valid JSON for other readers
    assert state.load() == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_save_failure_raises_oserror_and_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.json"
    state = StateFile(path)
    state.save({"a": 1})

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        state.save({"a": 2})
    monkeypatch.undo()
    assert state.load() == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # the temp file was removed


def test_save_into_a_path_under_a_file_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(OSError):
        StateFile(blocker / "s.json").save({"a": 1})
