"""Token persistence: one JSON file per Envoy serial, readable by the bridge's user only.

A valid stored token is reused after a restart without any call to the Enphase cloud. A stored token
that is expired, malformed, or for another serial is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

from envoy2mqtt.errors import TokenRejected

from .token import TokenClaims, decode_token

log = structlog.get_logger(__name__)

TokenSource = Literal["cloud", "config"]
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
STORE_VERSION = 1


@dataclass(frozen=True, slots=True)
class StoredToken:
    token: str
    claims: TokenClaims
    source: TokenSource
    stored_at: float


class TokenStore:
    """`<state_dir>/tokens/<serial>.json`; the directory is 0700, each file 0600, writes are atomic."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = Path(state_dir) / "tokens"
        self._save_failed = False

    def path_for(self, serial: str) -> Path:
        name = _UNSAFE.sub("_", serial) or "unknown"
        return self.directory / f"{name}.json"

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask and ignored when the directory exists.
        os.chmod(self.directory, 0o700)

    def load(self, serial: str, now: float) -> StoredToken | None:
        path = self.path_for(serial)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("token_store_unreadable", path=str(path), error=type(exc).__name__)
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("token"), str):
            log.warning("token_store_unreadable", path=str(path), error="unexpected content")
            return None
        if raw.get("serial") != serial:
            log.info("token_store_ignored", path=str(path), reason="stored for another serial")
            return None
        try:
            claims = decode_token(raw["token"])
        except TokenRejected as exc:
            log.warning("token_store_ignored", path=str(path), reason=str(exc))
            return None
        if claims.audience is not None and claims.audience != serial:
            log.info("token_store_ignored", path=str(path), reason="token is for another serial")
            return None
        if claims.expired(now):
            log.info("token_store_ignored", path=str(path), reason="token expired")
            return None
        source: TokenSource = "config" if raw.get("source") == "config" else "cloud"
        stored_at = raw.get("stored_at")
        return StoredToken(
            token=raw["token"],
            claims=claims,
            source=source,
            stored_at=float(stored_at) if isinstance(stored_at, int | float) else 0.0,
        )

    def save(self, serial: str, token: str, claims: TokenClaims, source: TokenSource, now: float) -> bool:
        """Store the token; False when the disk refuses (read-only, full): warned once, never raised.

        The caller keeps the token in memory either way: a state directory that cannot be written costs
        a token request after a restart, never the bridge's data.
        """
        try:
            self._write(serial, token, claims, source, now)
        except OSError as exc:
            if not self._save_failed:
                self._save_failed = True
                log.warning(
                    "token_store_failed",
                    action="keeping it in memory (after a restart the bridge needs a new one)",
                    fix="make the state directory writable",
                    path=str(self.path_for(serial)),
                    error=exc.strerror or type(exc).__name__,
                )
            return False
        if self._save_failed:
            self._save_failed = False
            log.info("token_stored_again", path=str(self.path_for(serial)))
        return True

    def _write(self, serial: str, token: str, claims: TokenClaims, source: TokenSource, now: float) -> None:
        self._ensure_directory()
        path = self.path_for(serial)
        document = {
            "version": STORE_VERSION,
            "serial": serial,
            "source": source,
            "stored_at": now,
            "claims": claims.as_json(),
            "token": token,
        }
        fd, tmp_name = tempfile.mkstemp(dir=self.directory, prefix=f".{path.stem}-", suffix=".tmp")
        try:
            handle = os.fdopen(fd, "w", encoding="utf-8")
        except BaseException:
            os.close(fd)
            os.unlink(tmp_name)
            raise
        try:
            with handle:
                os.fchmod(handle.fileno(), 0o600)  # mkstemp already does; say it where it matters
                json.dump(document, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise

    def delete(self, serial: str) -> None:
        """Remove a rejected stored token; a read-only state directory keeps it (`load` re-checks it)."""
        with contextlib.suppress(OSError):
            self.path_for(serial).unlink()
