"""A small JSON state store in the bridge's state directory.

The directory is private (0700) and every file in it is 0600: the state directory also holds the token
store. Writes are atomic (temp file in the same directory, fsync, ``os.replace``), so a crash or a full
disk never leaves a half-written file behind. A corrupt or unreadable file never stops the bridge: it is
logged, renamed aside for a human to look at, and the bridge starts from an empty state.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) if needed and make it 0700; warn when the mode cannot be set."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode != PRIVATE_DIR_MODE:
            path.chmod(PRIVATE_DIR_MODE)
    except OSError as exc:
        log.warning(
            "state_dir_not_private",
            detail="could not set mode 0700",
            path=str(path),
            error=type(exc).__name__,
        )


def prepare_state_dir(path: Path) -> bool:
    """`ensure_private_dir` for the daemon: False (warned once) when the directory cannot be created.

    A read-only or full disk must not stop the bridge: the token and the counter offsets are then kept
    in memory, and each store says once that it cannot save. Only a state_dir that is a file, or lies
    under one, is a configuration error (the caller turns NotADirectoryError into one).
    """
    try:
        ensure_private_dir(path)
    except (NotADirectoryError, FileExistsError):
        raise
    except OSError as exc:
        log.warning(
            "state_dir_create_failed",
            effect="tokens and counter offsets are kept in memory only",
            path=str(path),
            error=exc.strerror or type(exc).__name__,
        )
        return False
    return True


class StateFile:
    """One JSON object on disk. `load` never raises; `save` raises OSError when the disk refuses."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        """The stored object, or ``{}`` when the file is missing, unreadable or corrupt."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            self._set_aside(f"unreadable ({type(exc).__name__})")
            return {}
        try:
            data = json.loads(text)
        except ValueError:
            self._set_aside("not valid JSON")
            return {}
        if not isinstance(data, dict):
            self._set_aside(f"top level is a JSON {type(data).__name__}, not an object")
            return {}
        self._tighten_mode()
        return data

    def save(self, data: Mapping[str, Any]) -> None:
        """Write ``data`` atomically. A value that is not JSON raises TypeError/ValueError before any I/O."""
        body = json.dumps(data, separators=(",", ":"), allow_nan=False)
        directory = self.path.parent
        ensure_private_dir(directory)
        fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            # mkstemp already creates the file 0600; fchmod states the intent and survives odd umasks.
            os.fchmod(fd, PRIVATE_FILE_MODE)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise
        self._fsync_directory(directory)

    def _set_aside(self, why: str) -> None:
        base = f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
        aside = self.path.with_name(base)
        suffix = 1
        while aside.exists():
            suffix += 1
            aside = self.path.with_name(f"{base}~{suffix}")
        try:
            self.path.rename(aside)
        except OSError as exc:
            log.error(
                "state_file_unusable",
                detail="could not be moved aside",
                action="starting empty, the next save will replace it",
                path=str(self.path),
                reason=why,
                error=type(exc).__name__,
            )
            return
        log.error(
            "state_file_unusable",
            action="starting empty, the bad file is kept aside",
            path=str(self.path),
            reason=why,
            kept_as=str(aside),
        )

    def _tighten_mode(self) -> None:
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
            if mode & 0o077:
                self.path.chmod(PRIVATE_FILE_MODE)
        except OSError as exc:
            log.warning(
                "state_file_chmod_failed",
                detail="could not make the state file private",
                path=str(self.path),
                error=type(exc).__name__,
            )

    @staticmethod
    def _fsync_directory(directory: Path) -> None:
        # Makes the rename itself durable; not every platform allows opening a directory.
        try:
            dir_fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)
