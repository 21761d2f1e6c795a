"""The token store: one private JSON file per Envoy serial, written atomically."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import jwt
import pytest

from envoy2mqtt.envoy.auth.store import TokenStore
from envoy2mqtt.envoy.auth.token import decode_token

NOW = 1_800_000_000.0


def make_token(serial: str = "122446001637", exp: float = NOW + 86400, kind: str = "owner") -> str:
    return jwt.encode({"aud": serial, "enphaseUser": kind, "exp": int(exp)}, b"s" * 32, algorithm="HS256")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_round_trip_and_permissions(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # the store must not depend on a careful umask
    try:
        store = TokenStore(tmp_path / "state")
        token = make_token()
        store.save("122446001637", token, decode_token(token), "cloud", NOW)
    finally:
        os.umask(old_umask)
    path = store.path_for("122446001637")
    assert path.parent == tmp_path / "state" / "tokens"
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    loaded = store.load("122446001637", NOW)
    assert loaded is not None
    assert loaded.token == token
    assert loaded.source == "cloud"
    assert loaded.claims.token_type == "owner"
    assert loaded.claims.expires_at == int(NOW + 86400)
    document = json.loads(path.read_text())
    assert document["serial"] == "122446001637"
    assert document["claims"]["enphaseUser"] == "owner"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_existing_directory_is_tightened(tmp_path: Path) -> None:
    (tmp_path / "tokens").mkdir(mode=0o755)
    os.chmod(tmp_path / "tokens", 0o755)
    store = TokenStore(tmp_path)
    token = make_token()
    store.save("122446001637", token, decode_token(token), "config", NOW)
    assert mode(tmp_path / "tokens") == 0o700


def test_overwrite_is_atomic_replace(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    first, second = make_token(exp=NOW + 100), make_token(exp=NOW + 200)
    store.save("122446001637", first, decode_token(first), "cloud", NOW)
    inode = store.path_for("122446001637").stat().st_ino
    store.save("122446001637", second, decode_token(second), "cloud", NOW)
    loaded = store.load("122446001637", NOW)
    assert loaded is not None
    assert loaded.token == second
    assert store.path_for("122446001637").stat().st_ino != inode  # a new file renamed over the old one


def test_expired_token_is_ignored(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token = make_token(exp=NOW + 10)
    store.save("122446001637", token, decode_token(token), "cloud", NOW)
    assert store.load("122446001637", NOW + 9) is not None
    assert store.load("122446001637", NOW + 10) is None


def test_token_of_another_serial_is_ignored(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    other = make_token(serial="999999999999")
    store.save("122446001637", other, decode_token(other), "cloud", NOW)  # aud differs from the file's serial
    assert store.load("122446001637", NOW) is None
    # a file copied under another Envoy's name is ignored too
    mine = make_token()
    store.save("122446001637", mine, decode_token(mine), "cloud", NOW)
    store.path_for("555555555555").write_text(store.path_for("122446001637").read_text())
    assert store.load("555555555555", NOW) is None


@pytest.mark.parametrize("content", ["", "{", "[]", '{"serial": "122446001637"}', '{"token": 5}'])
def test_corrupt_file_is_ignored(tmp_path: Path, content: str) -> None:
    store = TokenStore(tmp_path)
    store.path_for("122446001637").parent.mkdir(parents=True)
    store.path_for("122446001637").write_text(content)
    assert store.load("122446001637", NOW) is None


def test_garbage_token_in_file_is_ignored(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    path = store.path_for("122446001637")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"serial": "122446001637", "token": "Error in generating Token"}))
    assert store.load("122446001637", NOW) is None


def test_serial_is_sanitised_into_a_file_name(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    assert store.path_for("../../etc/passwd").parent == tmp_path / "tokens"
    assert store.load("missing", NOW) is None
    store.delete("missing")  # deleting nothing is fine
