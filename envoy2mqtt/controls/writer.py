"""One command carried out: read the current document, write it back changed, read back until it shows.

Results (the `result` of the audit line and of `last_result`):

- `applied`: the Envoy reports the requested value (or already did: nothing was written).
- `not_applied`: the write was accepted (HTTP 200) but the value never showed within the time allowed;
  on 8.2.42xx+ a storage mode write with `opt_schedules` true is the known case.
- `rejected`: the Envoy answered the write with 4xx (401/403: this token may not), or the command was
  not valid / not offered (then nothing was sent; the service decides those).
- `failed`: the Envoy could not be read or written (unreachable, 5xx, a document without the field)
  and the value did not show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from envoy2mqtt.clock import Clock
from envoy2mqtt.errors import BadEnvoyData, EnvoyError, EnvoyWriteRefused, TokenError

from .catalog import Command, Value
from .documents import Document, opt_schedules

Result = Literal["applied", "not_applied", "rejected", "failed", "superseded", "ignored", "reverted"]


class EnvoyAccess(Protocol):
    """What the controls need of the Envoy client (its queue and authentication included)."""

    async def get_json(self, path: str) -> Any: ...

    async def write_json(self, method: str, path: str, document: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    control: str
    requested: Value | None
    result: Result
    reason: str
    value: Value | None = None  # as last read from the Envoy
    written: bool = False  # a write request went out


@dataclass(frozen=True, slots=True)
class Timing:
    readback_timeout: float
    readback_interval: float


class ControlWriter:
    def __init__(self, envoy: EnvoyAccess, clock: Clock) -> None:
        self._envoy = envoy
        self._clock = clock

    async def read(self, document: Document) -> tuple[Value | None, Any]:
        """The control's current value and the body it came from; raises EnvoyError/TokenError."""
        body = await self._envoy.get_json(document.read_path)
        return document.read(body), body

    async def execute(self, command: Command, document: Document, timing: Timing) -> Outcome:
        requested = command.value
        try:
            current, body = await self.read(document)
        except (EnvoyError, TokenError) as exc:
            return Outcome(command.control, requested, "failed", f"could not read the current setting: {exc}")
        if current == requested and not _wants_opt_schedules_off(command, body):
            return Outcome(command.control, requested, "applied", "already set; nothing written", current)
        try:
            new_document = document.build(body, command)
        except BadEnvoyData as exc:
            return Outcome(command.control, requested, "failed", str(exc), current)

        write_problem: str | None = None
        try:
            await self._envoy.write_json(document.write_method, document.write_path, new_document)
        except EnvoyWriteRefused as exc:
            hint = " (this token may not change it)" if exc.status in (401, 403) else ""
            return Outcome(
                command.control,
                requested,
                "rejected",
                f"the Envoy refused the write: {exc}{hint}",
                current,
                True,
            )
        except (EnvoyError, TokenError) as exc:
            # Unknown whether the Envoy carried it out (a write is never retried): read back and see.
            write_problem = str(exc)
        return await self._read_back(command, document, timing, current, body, write_problem)

    async def _read_back(
        self,
        command: Command,
        document: Document,
        timing: Timing,
        before: Value | None,
        before_body: Any,
        write_problem: str | None,
    ) -> Outcome:
        requested = command.value
        deadline = self._clock.monotonic() + timing.readback_timeout
        last: Value | None = before
        last_body: Any = before_body
        read_error: str | None = None
        read_once = False
        while True:
            await self._clock.sleep(
                min(timing.readback_interval, max(0.0, deadline - self._clock.monotonic()))
            )
            try:
                body = await self._envoy.get_json(document.read_path)
            except (EnvoyError, TokenError) as exc:
                read_error = str(exc)
            else:
                read_once = True
                read_error = None
                if not document.unsettled(body):
                    last, last_body = document.read(body), body
                    if last == requested:
                        reason = "read back from the Envoy"
                        if write_problem:
                            reason += f" (the write itself reported: {write_problem})"
                        return Outcome(command.control, requested, "applied", reason, last, True)
            if self._clock.monotonic() >= deadline:
                break
        seconds = f"{timing.readback_timeout:g} s"
        if write_problem is not None:
            return Outcome(
                command.control, requested, "failed",
                f"the write failed ({write_problem}) and the setting still reads {last!r}", last, True,
            )  # fmt: skip
        if not read_once:
            return Outcome(
                command.control, requested, "failed",
                f"accepted, but it could not be read back within {seconds}: {read_error}", last, True,
            )  # fmt: skip
        reason = f"accepted (HTTP 200) but the Envoy still reports {last!r} after {seconds}"
        if command.control == "storage_mode" and opt_schedules(last_body):
            reason += (
                "; opt_schedules is true, so the battery controller ignores mode writes: send "
                '{"value": "...", "opt_schedules_off": true} or set opt_schedules_off = true'
            )
        return Outcome(command.control, requested, "not_applied", reason, last, True)


def _wants_opt_schedules_off(command: Command, body: Any) -> bool:
    return command.control == "storage_mode" and command.opt_schedules_off and opt_schedules(body) is True
