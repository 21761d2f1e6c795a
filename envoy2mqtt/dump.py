"""`envoy2mqtt capture` writes a dump: every endpoint of an Envoy in the capture layout the simulator serves.

The dump is what users attach to bug reports, so it is redacted consistently: every serial number
becomes a stable fake of the same length (the same real serial always maps to the same fake, so the
files still agree with each other), and tokens, cookies, e-mail addresses and MAC addresses are
replaced (each distinct MAC address and e-mail address by its own stand-in, so they stay distinct).
The simulator can replay the folder as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import EnvoySettings, Settings
from .envoy import endpoints
from .envoy.client import EnvoyClient
from .errors import ConfigError, EnvoyAuthError, EnvoyError, EnvoyHttpError

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_MAC = re.compile(r"\b[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}\b")
_SERIAL_KEYS = re.compile(r"^(sn|serial|serialnumber|serial_num|serial_number|serialnum)$", re.IGNORECASE)
_XML_SERIAL = re.compile(r"<sn>(\w+)</sn>")
_SESSION = re.compile(r"(session_?id[\"'=:\s]+)[A-Za-z0-9%._-]+", re.IGNORECASE)


class Redactor:
    """Replaces secrets and identifiers; the same serial always gets the same stand-in."""

    def __init__(self) -> None:
        self.serials: dict[str, str] = {}
        self.macs: dict[str, str] = {}
        self.emails: dict[str, str] = {}

    def _mac(self, match: re.Match[str]) -> str:
        real = match.group(0).lower().replace("-", ":")
        if real not in self.macs:
            index = len(self.macs) + 1
            # locally administered unicast addresses: never a real vendor's
            self.macs[real] = f"02:00:00:00:{index // 256 % 256:02x}:{index % 256:02x}"
        return self.macs[real]

    def _email(self, match: re.Match[str]) -> str:
        real = match.group(0).lower()
        if real not in self.emails:
            self.emails[real] = f"user{len(self.emails) + 1}@example.com"
        return self.emails[real]

    def serial(self, real: str) -> str:
        if real not in self.serials:
            taken = {*self.serials, *self.serials.values()}
            index = len(self.serials)
            fake = real
            while fake in taken or fake == real:
                index += 1
                # digits stay digits and never start with 0 (serials also appear as JSON numbers)
                fake = f"9{index:0{len(real) - 1}d}" if real.isdigit() else f"SN{index:0{len(real) - 2}d}"
                fake = fake[-len(real) :] if len(real) > 2 else fake
            self.serials[real] = fake
        return self.serials[real]

    def learn(self, data: Any) -> None:
        """Collect every serial number in a JSON document (keys named like serials, or keyed by serial)."""
        if isinstance(data, dict):
            for key, value in data.items():
                if _SERIAL_KEYS.match(str(key)) and isinstance(value, str | int) and str(value).strip():
                    self.serial(str(value))
                if key == "serial_nums" and isinstance(value, dict):
                    for serial in value:
                        self.serial(str(serial))
                self.learn(value)
        elif isinstance(data, list):
            for item in data:
                self.learn(item)

    def text(self, text: str) -> str:
        for match in _XML_SERIAL.findall(text):
            self.serial(match)
        known = [re.escape(real) for real in sorted(self.serials, key=len, reverse=True) if len(real) >= 6]
        if known:
            # whole tokens only: a serial inside a longer number is not that serial
            pattern = re.compile(rf"(?<![0-9A-Za-z])(?:{'|'.join(known)})(?![0-9A-Za-z])")
            text = pattern.sub(lambda m: self.serials[m.group(0)], text)
        text = _JWT.sub("<redacted-token>", text)
        text = _EMAIL.sub(self._email, text)
        text = _MAC.sub(self._mac, text)
        return _SESSION.sub(r"\1<redacted>", text)


# Files the shared layout (and so the simulator) names differently from the path.
_LAYOUT_NAMES = {endpoints.INFO: "info", endpoints.HOME: "home"}


def capture_name(path: str) -> str:
    """The file a path is stored in: the shared layout's name (`/home.json` is `home`, `/info` is `info`)."""
    return _LAYOUT_NAMES.get(path, endpoints.capture_file_name(path))


async def capture_envoy(envoy: EnvoySettings, settings: Settings, output: Path) -> list[str]:
    """Write one file per endpoint (+ `<name>_log.json` with the status); return the lines of a summary."""
    output.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a one-shot CLI command
    redactor = Redactor()
    raw: dict[str, tuple[int, str]] = {}
    async with EnvoyClient(envoy, settings.enphase_cloud, settings.token, settings.state_dir) as client:
        info = await client.connect()
        redactor.serial(info.serial)
        for path in endpoints.CAPTURE_ENDPOINTS:
            try:
                raw[path] = (200, await client.get_text(path))
            except EnvoyAuthError:
                raw[path] = (401, "")
            except EnvoyHttpError as exc:
                raw[path] = (exc.status, "")
            except EnvoyError:
                continue  # unreachable for this one path: nothing to write
    for _, body in raw.values():
        try:
            redactor.learn(json.loads(body))
        except ValueError:
            redactor.text(body)
    summary = []
    for path, (status, body) in raw.items():
        name = capture_name(path)
        if status == 200:
            (output / name).write_text(redactor.text(body), encoding="utf-8")
        log = {"code": status, "headers": {}}
        (output / f"{name}_log.json").write_text(json.dumps(log) + "\n", encoding="utf-8")
        summary.append(f"  {path:<36} HTTP {status}")
    return summary


def _pick(envoys: Iterable[EnvoySettings], wanted: str | None) -> EnvoySettings:
    candidates = list(envoys)
    if wanted is None:
        return candidates[0]
    for envoy in candidates:
        if wanted in (envoy.name, envoy.host, envoy.serial):
            return envoy
    raise ConfigError(f"--envoy {wanted!r} matches no [[envoy]] name, host or serial")


async def run_capture(settings: Settings, output: Path, wanted: str | None) -> int:
    envoy = _pick(settings.envoy, wanted)
    summary = await capture_envoy(envoy, settings, output)
    print(
        f"captured {len(summary)} endpoints of {envoy.label} into {output} (serials, tokens, e-mail and MAC "
        "addresses redacted):"
    )
    print("\n".join(summary))
    print(f"replay it with: envoy2mqtt simulate {output}")
    return 0
