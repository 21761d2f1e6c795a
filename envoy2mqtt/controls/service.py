"""One Envoy's controls in the daemon: commands in from MQTT, writes through the Envoy client, state out.

Runs only for an `[[envoy]]` with `controls = true`, once the Envoy is connected and probed. It decides
what is offered (`catalog.decide_offer`), reads every offered control, publishes the retained state,
hands the offered controls to the announcer (discovery), then subscribes to `<base>/<envoy>/control/+/set`. The MQTT handler never blocks:
it validates, queues and returns; one worker task carries the commands out one at a time.

Every command leaves exactly one audit log line (`control_command`: control, requested value, result,
reason), whatever becomes of it: carried out, superseded by a newer command, refused, or ignored
because it was a retained message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from envoy2mqtt.clock import Clock
from envoy2mqtt.config import ControlSettings, EnvoySettings
from envoy2mqtt.errors import EnvoyError, TokenError
from envoy2mqtt.model import Features
from envoy2mqtt.mqtt.publisher import IncomingMessage, Publisher
from envoy2mqtt.mqtt.topics import Topics

from .catalog import Command, CommandError, ControlSpec, Offer, Value, decide_offer, parse_command
from .commands import CommandQueue
from .documents import DRY_CONTACTS, Document, contact_ids, document_for
from .state import ControlState
from .watch import RevertWatcher
from .writer import ControlWriter, EnvoyAccess, Outcome, Timing

log = structlog.get_logger(__name__)

_LEVELS = {"applied": "info", "superseded": "info", "ignored": "info"}


def audit(envoy_label: str, outcome: Outcome) -> None:
    """The one audit line of a command. Values only: payloads were validated or cut short, never secrets."""
    level = _LEVELS.get(outcome.result, "warning")
    getattr(log, level)(
        "control_command",
        envoy=envoy_label,
        control=outcome.control,
        requested=outcome.requested,
        result=outcome.result,
        reason=outcome.reason,
    )


class EnvoyControls:
    def __init__(
        self,
        envoy: EnvoySettings,
        settings: ControlSettings,
        client: EnvoyAccess,
        publisher: Publisher,
        topics: Topics,
        clock: Clock,
        *,
        announce: Callable[[Sequence[ControlSpec]], None],
    ) -> None:
        self.envoy = envoy
        self.settings = settings
        self.client = client
        self.publisher = publisher
        self.topics = topics
        self.clock = clock
        self.announce = announce  # the Home Assistant entities of the offered controls (the announcer)
        self.offer = Offer({}, {})
        self.state = ControlState(())
        self._writer = ControlWriter(client, clock)
        self._queue = CommandQueue(clock, settings.min_gap)
        self._watcher = RevertWatcher(settings.watch_duration, settings.watch_interval)
        self._watch_wakeup = asyncio.Event()
        self._in_progress: Command | None = None
        self._envoy_id = ""
        self._documents: dict[str, Document] = {}

    # ------------------------------------------------------------------------------ lifecycle

    async def run(
        self,
        envoy_id: str,
        features: Features,
        *,
        auth_mode: str | None,
        token_type: str | None,
    ) -> None:
        """Offer, read, announce, subscribe, then serve commands until cancelled."""
        self._envoy_id = envoy_id
        contacts: list[str] = []
        if self.envoy.controls and features.enpower:
            contacts = await self._contact_ids()
        self.offer = decide_offer(
            self.envoy, features, auth_mode=auth_mode, token_type=token_type, contact_ids=contacts
        )
        self.state = ControlState(self.offer.controls)
        self._documents = {name: document_for(spec) for name, spec in self.offer.controls.items()}
        log.info(
            "controls_ready",
            envoy=self.envoy.label,
            offered=sorted(self.offer.controls),
            refused=dict(self.offer.refused),
        )
        await self.refresh()
        self.announce(list(self.offer.controls.values()))
        commands = self.topics.control_commands(envoy_id)
        self.publisher.subscribe(commands, self.handle_message, qos=1)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._work())
                group.create_task(self._watch())
                group.create_task(self._refresh_periodically())
        finally:
            self.publisher.unsubscribe(commands)

    async def _contact_ids(self) -> list[str]:
        try:
            return contact_ids(await self.client.get_json(DRY_CONTACTS))
        except (EnvoyError, TokenError) as exc:
            log.warning("dry_contacts_unreadable", envoy=self.envoy.label, reason=str(exc))
            return []

    def _publish_state(self) -> None:
        pending: dict[str, Value] = {c.control: c.value for c in self._queue.waiting.values()}
        if self._in_progress is not None:
            pending.setdefault(self._in_progress.control, self._in_progress.value)
        self.state.pending = pending
        self.publisher.publish(self.topics.control_state(self._envoy_id), self.state.payload(), retain=True)

    # ------------------------------------------------------------------------------ commands in

    def handle_message(self, message: IncomingMessage) -> None:
        """The MQTT handler: validate and queue, never block, never send anything itself."""
        name = self._control_of(message.topic)
        if name is None:
            return
        shown = shown_payload(message.payload)
        if message.retain:
            # A retained "OFF" left on the broker must not switch production off at every restart.
            self._conclude(
                Outcome(name, shown, "ignored", "retained message on a command topic"), record=False
            )
            return
        spec = self.offer.controls.get(name)
        if spec is None:
            self._conclude(Outcome(name, shown, "rejected", f"not offered: {self.offer.refusal(name)}"))
            return
        try:
            command = parse_command(spec, message.payload)
        except CommandError as exc:
            self._conclude(Outcome(name, shown, "rejected", f"invalid command: {exc}"))
            return
        if (
            command.control == "storage_mode"
            and self.envoy.opt_schedules_off
            and not command.opt_schedules_off
        ):
            command = Command(command.control, command.value, True)
        replaced = self._queue.submit(command)
        self._watcher.forget(command.control)
        if replaced is not None:
            self._conclude(
                Outcome(replaced.control, replaced.value, "superseded", "a newer command replaced it"),
                record=False,
            )
        self._publish_state()

    def _control_of(self, topic: str) -> str | None:
        prefix = self.topics.control_commands(self._envoy_id).split("+", 1)[0]
        if not topic.startswith(prefix) or not topic.endswith("/set"):
            return None
        name = topic[len(prefix) : -len("/set")]
        return name if name and "/" not in name else None

    def _conclude(self, outcome: Outcome, *, record: bool = True) -> None:
        audit(self.envoy.label, outcome)
        if record:
            self.state.record(outcome, self.clock.time())
            self._publish_state()

    # ------------------------------------------------------------------------------ the worker

    def _timing(self, spec: ControlSpec) -> Timing:
        settings = self.settings
        timeout = settings.readback_timeout
        if spec.name == "grid_relay":
            timeout = settings.relay_readback_timeout
        elif spec.contact_id is not None:
            timeout = settings.dry_contact_readback_timeout
        return Timing(timeout, settings.readback_interval)

    async def _work(self) -> None:
        while True:
            command = await self._queue.next()
            spec = self.offer.controls.get(command.control)
            if spec is None:  # queued before the offer was decided anew (a new probe)
                reason = f"no longer offered: {self.offer.refusal(command.control)}"
                self._conclude(Outcome(command.control, command.value, "rejected", reason))
                continue
            self._in_progress = command
            self._publish_state()
            try:
                outcome = await self._writer.execute(command, self._documents[spec.name], self._timing(spec))
            except Exception as exc:  # a bug must not leave the command without its audit line
                log.exception("control_command_crashed", envoy=self.envoy.label, control=command.control)
                outcome = Outcome(
                    command.control, command.value, "failed", f"internal error: {type(exc).__name__}"
                )
            finally:
                self._in_progress = None
            if outcome.written:
                self._queue.wrote()
            if outcome.result == "applied" and outcome.value is not None:
                self._watcher.watch(command.control, outcome.value, self.clock.monotonic())
                self._watch_wakeup.set()
            self._conclude(outcome)

    # ------------------------------------------------------------------------------ reading

    async def _read_documents(self, names: list[str]) -> dict[str, Any]:
        """One read per document path for these controls; a path that failed is absent."""
        bodies: dict[str, Any] = {}
        for path in dict.fromkeys(self._documents[n].read_path for n in names):
            try:
                bodies[path] = await self.client.get_json(path)
            except (EnvoyError, TokenError) as exc:
                log.info("control_setting_unreadable", envoy=self.envoy.label, path=path, reason=str(exc))
        return bodies

    def _values(self, names: list[str], bodies: Mapping[str, Any]) -> dict[str, Value | None]:
        values: dict[str, Value | None] = {}
        for name in names:
            document = self._documents[name]
            body = bodies.get(document.read_path)
            if body is not None and not document.unsettled(body):
                values[name] = document.read(body)
        return values

    async def refresh(self) -> None:
        """Read every offered control (skipping those with a command in progress) and publish."""
        names = [n for n in self._documents if self._in_progress is None or n != self._in_progress.control]
        values = self._values(names, await self._read_documents(names))
        for name, value in values.items():
            if value is not None:
                self.state.values[name] = value
        self._publish_state()

    async def _refresh_periodically(self) -> None:
        while True:
            await self.clock.sleep(self.settings.refresh_interval)
            await self.refresh()

    async def _watch(self) -> None:
        while True:
            self._watch_wakeup.clear()  # before computing the wait: a watch added later wakes us
            wait = self._watcher.seconds_to_next(self.clock.monotonic())
            await self._sleep_or_wakeup(wait)
            due = self._watcher.due(self.clock.monotonic())
            if not due:
                continue
            values = self._values(due, await self._read_documents(due))
            now = self.clock.monotonic()
            changed = False
            for name in due:
                value = values.get(name)
                reverted = self._watcher.observe(name, value, now)
                if value is not None and self.state.values.get(name) != value:
                    self.state.values[name] = value
                    changed = True
                if reverted is not None:
                    self.state.record(
                        Outcome(
                            name, reverted, "reverted",
                            f"changed to {value!r} without a command (the Enlighten cloud pushes its own "
                            "settings back while the gateway is online)", value,
                        ),
                        self.clock.time(),
                    )  # fmt: skip
                    log.warning(
                        "control_reverted", envoy=self.envoy.label, control=name, was=reverted, now=value
                    )
                    changed = True
            if changed:
                self._publish_state()

    async def _sleep_or_wakeup(self, seconds: float | None) -> None:
        waiter = asyncio.ensure_future(self._watch_wakeup.wait())
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds)) if seconds is not None else None
        try:
            await asyncio.wait(
                [t for t in (waiter, sleeper) if t is not None], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (waiter, sleeper):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task


def shown_payload(payload: bytes, limit: int = 32) -> str:
    """A command payload as the audit line and `last_result` show it: text, cut short."""
    text = payload.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def retire_controls(publisher: Publisher, topics: Topics, envoy_id: str) -> None:
    """Controls off: take down the state a run with controls on may have left on the broker (the
    announcer takes down the entities)."""
    publisher.clear(topics.control_state(envoy_id))
