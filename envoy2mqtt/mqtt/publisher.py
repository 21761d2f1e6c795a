"""The MQTT side: one aiomqtt connection, Last Will, reconnect loop, last-state replay.

What the publisher guarantees:

- Nothing is published before the broker's CONNACK (aiomqtt's ``async with`` waits for it).
- The Last Will sets ``<base>/bridge/availability`` to ``offline`` (retained, QoS 1); ``online`` is
  published retained after every successful connect, before anything else.
- After each (re)connect: bridge ``online``, then ``on_connect()`` (the supervisor pushes discovery
  and Envoy availability there), then every discovery config, then every last state.
- ``publish()`` never blocks. The latest payload per topic is remembered (a dict: memory stays bounded
  by the number of topics, and a value that was replaced while offline is never sent).
- Home Assistant's birth message (``<prefix>/status`` = ``online``) triggers one republish of every
  config and last state after a random 1-5 s delay; births in a row share one republish.
- ``publish_transient()`` is for values that are worthless seconds later (real-time power): QoS 0, never
  retained, never remembered, sent ahead of the queued states, dropped while disconnected and never
  replayed after a reconnect or a Home Assistant birth.
- Lost connections are retried forever with capped, jittered exponential backoff. Only a broker that
  refuses us for good (bad credentials, not authorized) ends ``run()`` with ``MqttError``.
- ``subscribe()`` registers a handler for a topic filter (command topics, bridge requests); the
  subscriptions are made again after every (re)connect, and each incoming message reaches every handler
  whose filter matches, with its retain flag so that handlers can ignore stale retained commands. A
  handler that raises is logged and never ends the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import structlog
from aiomqtt.exceptions import MqttConnectError

from envoy2mqtt.clock import SYSTEM_CLOCK, Clock
from envoy2mqtt.config import MqttSettings
from envoy2mqtt.errors import MqttError
from envoy2mqtt.model import Payload
from envoy2mqtt.mqtt.topics import Topics
from envoy2mqtt.retry import RetryPolicy

log = structlog.get_logger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"
MAX_BACKOFF = 60.0
HA_BIRTH_DELAY = (1.0, 5.0)
SHUTDOWN_TIMEOUT = 10.0

# A connection that stayed up this long was a good one: the reconnect backoff starts over after it.
# One that drops sooner keeps the backoff growing (a broker that accepts and then kicks us, another
# client taking over our client id).
STABLE_CONNECTION = 30.0
BROKER_PROBE_TIMEOUT = 2.0  # a plain TCP connect to tell a takeover from a broker restart
QUICK_LOSSES_BEFORE_TAKEOVER = 4  # quick losses in a row that mean "someone else uses our client id"
SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason code
UNSUPPORTED_PROTOCOL = 132  # MQTT 5 CONNACK; paho maps the 3.1.1 code 1 onto it
ECHO_TIMEOUT = 10.0  # MQTT 3.1.1: our own availability message must come back within this

# CONNACK reason codes after which retrying cannot help (MQTT 5 numbering; paho maps the 3.1.1 codes
# 2, 4 and 5 onto 133, 134 and 135): bad client id, bad credentials, not authorized, banned, bad auth method.
_FATAL_REASON_CODES = frozenset({133, 134, 135, 138, 140})


class _SocketLossIsAWarning(logging.Filter):
    """paho logs a socket that died (a broker restart, a cut cable) at error level; the publisher then
    reports the lost connection itself, once, as a warning, and reconnects: a second line at error level
    would page someone for what the bridge already handles."""

    _PREFIXES = ("failed to receive on socket", "timeout on socket")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith(self._PREFIXES):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_CLIENT_LOG = logging.getLogger("mqtt")  # aiomqtt's and paho's messages, under their usual name
_CLIENT_LOG.addFilter(_SocketLossIsAWarning())


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A message the broker routed to one of our subscriptions."""

    topic: str
    payload: bytes
    retain: bool


MessageHandler = Callable[[IncomingMessage], None]


@dataclass(frozen=True, slots=True)
class _Subscription:
    handler: MessageHandler
    qos: int


@dataclass(frozen=True, slots=True)
class _Message:
    payload: bytes
    retain: bool
    qos: int


def encode_payload(payload: Payload | str | bytes) -> bytes:
    """JSON objects compactly, text as UTF-8, bytes as given. NaN and infinities raise ValueError."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _refusal_reason(exc: MqttConnectError) -> str | None:
    """The reason when the broker refused the connection for good, else None (worth retrying)."""
    value = getattr(exc.rc, "value", exc.rc)
    if isinstance(value, int) and value in _FATAL_REASON_CODES:
        return str(exc.rc).lower()
    return None


def _tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    tls = settings.tls
    if not tls.enabled:
        return None
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise MqttError(f"cannot load the MQTT TLS files (mqtt.tls): {exc}") from None
    if tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Client(aiomqtt.Client):
    """aiomqtt's client, keeping two reason codes that aiomqtt drops: the broker's answer to a QoS 1
    publish (MQTT 5 PUBACK: "not authorized" for a topic the ACL forbids) and why the broker ended the
    connection (MQTT 5 DISCONNECT: "session taken over")."""

    puback_code = 0
    disconnect_code = 0

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        self.puback_code = _code(reason_code)
        super()._on_publish(client, userdata, mid, reason_code, properties)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None
    ) -> None:
        self.disconnect_code = _code(reason_code)
        super()._on_disconnect(client, userdata, flags, reason_code, properties)

    def settle_disconnect(self) -> None:
        """Mark an unexpected disconnection as handled.

        aiomqtt stores it as an exception on a future that only its message iterator reads; when the
        sender noticed the loss first and the listener was cancelled, nobody read it, and asyncio logged
        "Future exception was never retrieved" at error level for a loss the publisher had handled.
        """
        disconnected = getattr(self, "_disconnected", None)
        if isinstance(disconnected, asyncio.Future) and disconnected.done() and not disconnected.cancelled():
            disconnected.exception()


def _code(reason_code: Any) -> int:
    value = getattr(reason_code, "value", reason_code)
    return value if isinstance(value, int) else 0


class Publisher:
    """Owns the MQTT connection; the rest of the bridge only calls the non-blocking ``publish``."""

    def __init__(
        self,
        settings: MqttSettings,
        topics: Topics,
        clock: Clock = SYSTEM_CLOCK,
        on_connect: Callable[[], Awaitable[None]] | None = None,
        *,
        initial_backoff: float = 1.0,
        max_backoff: float = MAX_BACKOFF,
        ha_birth_delay: tuple[float, float] = HA_BIRTH_DELAY,
    ) -> None:
        self._settings = settings
        self._topics = topics
        self._clock = clock
        self._on_connect = on_connect
        # Reconnect waits: half to all of initial × 2^n, capped (a broker restart brings every client back).
        self.backoff = RetryPolicy(initial=initial_backoff, cap=max_backoff, jitter=(0.5, 1.0), clock=clock)
        self._ha_birth_delay = ha_birth_delay
        self._client_id = settings.client_id or f"envoy2mqtt-{secrets.token_hex(4)}"
        self._tls = _tls_context(settings)

        self.connected = asyncio.Event()
        self.reconnects = 0
        self.messages_published = 0  # acknowledged by the broker (refused ones are not counted)
        self.messages_refused = 0  # refused by the broker (MQTT 5 PUBACK "not authorized"...)
        # Why the broker does not take our messages (None: it does); readiness reports it.
        self.refusal: str | None = None
        self._refused_topics: set[str] = set()
        # MQTT 5 where the broker speaks it (its PUBACK says when it refuses a message); 3.1.1 otherwise
        self._protocol = (
            aiomqtt.ProtocolVersion.V311 if settings.protocol == "3.1.1" else aiomqtt.ProtocolVersion.V5
        )
        self._protocol_pinned = settings.protocol != "auto"  # "auto" until a connection worked
        self._quick_losses = 0
        self._takeover = False  # inside a takeover episode: the backoff keeps growing
        self._takeover_reported = False
        self._echo_task: asyncio.Task[None] | None = None
        self._echo_seen = asyncio.Event()
        self.ha_births = 0  # Home Assistant birth messages seen
        self.ha_republishes = 0  # republishes those births triggered (debounced)

        self._configs: dict[str, _Message] = {}  # discovery configs, retained
        self._states: dict[str, _Message] = {}  # the last state per topic
        self._outbox: dict[str, _Message] = {}  # to send on the current connection, oldest first
        self._once: deque[tuple[str, _Message]] = deque()  # one-off messages (responses), in order
        self._transient: dict[str, _Message] = {}  # QoS 0 real-time values, sent before the outbox
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._client: aiomqtt.Client | None = None
        self._sender: asyncio.Task[None] | None = None
        self._birth_task: asyncio.Task[None] | None = None
        self._birth_deadline = 0.0
        self._stop = asyncio.Event()
        self._stopping = False
        self._running = False
        self._finished = asyncio.Event()
        self._subscriptions: dict[str, _Subscription] = {}
        self._subscribing: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- the non-blocking surface

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1) -> None:
        """Call ``handler`` for every message on ``topic_filter``, on this connection and every later one.

        The handler runs in the listener: it must not block (hand long work to a task of its own).
        Registering the same filter again replaces its handler.
        """
        self._subscriptions[topic_filter] = _Subscription(handler, qos)
        client = self._client
        if client is not None and self.connected.is_set():
            task = asyncio.get_running_loop().create_task(self._subscribe_now(client, topic_filter, qos))
            self._subscribing.add(task)
            task.add_done_callback(self._subscribing.discard)

    def unsubscribe(self, topic_filter: str) -> None:
        """Stop delivering ``topic_filter``; the broker subscription ends with the next reconnect at the latest."""
        if self._subscriptions.pop(topic_filter, None) is None:
            return
        client = self._client
        if client is not None and self.connected.is_set():
            task = asyncio.get_running_loop().create_task(self._unsubscribe_now(client, topic_filter))
            self._subscribing.add(task)
            task.add_done_callback(self._subscribing.discard)

    def publish(self, topic: str, payload: Payload | str | bytes, retain: bool | None = None) -> None:
        """Remember ``payload`` as the last state of ``topic`` and send it now, or after the next connect."""
        message = _Message(
            encode_payload(payload),
            self._settings.retain if retain is None else retain,
            self._settings.qos,
        )
        if self._stopping:
            return
        self._states[topic] = message
        if self.connected.is_set():
            self._enqueue(topic, message)
        else:
            self._outbox.pop(topic, None)  # a pending clear is superseded by the new value

    def send_once(self, topic: str, payload: Payload | str | bytes) -> bool:
        """Send one message now, not retained, in order: never merged with another on the same topic,
        never remembered or replayed after a reconnect (request responses). False when not connected."""
        if not self.connected.is_set() or self._stopping:
            return False
        self._once.append((topic, _Message(encode_payload(payload), False, self._settings.qos)))
        self._drained.clear()
        self._wakeup.set()
        return True

    def publish_transient(self, topic: str, payload: Payload) -> None:
        """Send now at QoS 0, not retained, not remembered: dropped when not connected (a stale value is
        worse than none); a newer value for the topic replaces one still waiting."""
        if self._stopping or not self.connected.is_set():
            return
        self._transient.pop(topic, None)
        self._transient[topic] = _Message(encode_payload(payload), False, 0)
        self._drained.clear()
        self._wakeup.set()

    def set_config(self, topic: str, payload: Payload) -> None:
        """Remember a discovery config (retained, QoS 1); never sent when discovery is disabled."""
        if not self._settings.discovery or self._stopping:
            return
        message = _Message(encode_payload(payload), True, 1)
        self._configs[topic] = message
        if self.connected.is_set():
            self._enqueue(topic, message)
        else:
            self._outbox.pop(topic, None)

    def clear(self, topic: str) -> None:
        """Publish an empty retained payload (the broker drops its retained copy), then forget the topic."""
        self._configs.pop(topic, None)
        self._states.pop(topic, None)
        if self._stopping:
            return
        # Kept across disconnects: a clear must reach the broker even if we are offline right now.
        self._enqueue(topic, _Message(b"", True, 1))

    @property
    def config_count(self) -> int:
        """How many discovery configs the publisher holds (and replays)."""
        return len(self._configs)

    async def republish_all(self) -> None:
        """Send every config, then every last state; returns once they are sent or the connection is lost."""
        if not self.connected.is_set() or self._stopping:
            return
        self._enqueue_replay()
        await self._drained.wait()

    # ---------------------------------------------------------------- the connection loop

    async def run(self) -> None:
        """Connect, keep connected, reconnect; returns after ``shutdown()``, raises MqttError if refused."""
        if self._running:
            raise RuntimeError("Publisher.run() is already running")
        self._running = True
        self._finished.clear()
        ever_connected = False
        try:
            while not self._stop_requested():
                client = self._new_client()
                came_up = False
                try:
                    async with client:
                        came_up = True
                        self._protocol_pinned = True
                        if ever_connected:
                            self.reconnects += 1
                        ever_connected = True
                        if not self._takeover:
                            self.backoff.succeeded()
                        self.backoff.started()
                        (log.debug if self._takeover_reported else log.info)(
                            "mqtt_connected",
                            host=self._settings.host,
                            port=self._settings.port,
                            reconnects=self.reconnects,
                            protocol="5" if self._protocol == aiomqtt.ProtocolVersion.V5 else "3.1.1",
                        )
                        await self._session(client)
                    if self._stop_requested():
                        break
                except MqttConnectError as exc:
                    if _code(exc.rc) == UNSUPPORTED_PROTOCOL and not self._protocol_pinned:
                        log.info(
                            "mqtt_protocol_fallback",
                            reason="the broker does not speak MQTT 5",
                            protocol="3.1.1",
                        )
                        self._protocol = aiomqtt.ProtocolVersion.V311
                        self._protocol_pinned = True
                        continue
                    reason = _refusal_reason(exc)
                    if reason is not None:
                        raise MqttError(
                            f"the MQTT broker {self._settings.host}:{self._settings.port} refused the "
                            f"connection: {reason} (check mqtt.username, mqtt.password and the broker's ACL)"
                        ) from None
                    self._connection_lost(exc)
                except (aiomqtt.MqttError, OSError) as exc:
                    if (
                        not came_up
                        and not self._protocol_pinned
                        and not isinstance(exc, ConnectionRefusedError)
                    ):
                        # A broker that reads MQTT 5 as garbage may close or never answer instead of
                        # refusing the version: try the other protocol next (kept once one works).
                        self._protocol = (
                            aiomqtt.ProtocolVersion.V311
                            if self._protocol == aiomqtt.ProtocolVersion.V5
                            else aiomqtt.ProtocolVersion.V5
                        )
                    broker_up = came_up and await self._broker_still_up(client)
                    self._connection_lost(exc, taken_over=self._taken_over(client, came_up, broker_up))
                finally:
                    client.settle_disconnect()
                if self._stop_requested():
                    break
                delay = self.backoff.failed()
                (log.debug if self._takeover_reported else log.info)(
                    "mqtt_reconnecting", delay=round(delay, 2), attempt=self.backoff.failures
                )
                await self._sleep_unless_stopped(delay)
        finally:
            self._disconnected()
            self._running = False
            self._finished.set()

    async def shutdown(self, offline_topics: Iterable[str]) -> None:
        """Publish ``offline`` (retained, QoS 1) on these topics and the bridge's, then disconnect cleanly."""
        self._stopping = True
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        client = self._client
        if client is not None and self.connected.is_set():
            topics = [*dict.fromkeys(offline_topics), self._topics.bridge_availability]
            try:
                for topic in topics:
                    await client.publish(topic, OFFLINE, qos=1, retain=True, timeout=SHUTDOWN_TIMEOUT)
                    self.messages_published += 1
            except aiomqtt.MqttError as exc:
                log.warning("mqtt_offline_publish_failed", phase="shutdown", error=str(exc))
        self._stop.set()
        if self._running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), SHUTDOWN_TIMEOUT)

    # ---------------------------------------------------------------- internals

    def _stop_requested(self) -> bool:
        return self._stopping

    def _new_client(self) -> _Client:
        s = self._settings
        return _Client(
            s.host,
            s.port,
            username=s.username or None,
            password=s.password.get_secret_value() or None,
            identifier=self._client_id,
            will=aiomqtt.Will(self._topics.bridge_availability, OFFLINE, qos=1, retain=True),
            keepalive=s.keepalive,
            tls_context=self._tls,
            timeout=30,
            logger=_CLIENT_LOG,
            protocol=self._protocol,
        )

    def _taken_over(self, client: _Client, came_up: bool, broker_up: bool) -> bool:
        """Whether the connection just lost was taken over by another client with our client id.

        MQTT 5 brokers may say so (DISCONNECT "session taken over"); otherwise the sign is a connection
        that keeps dropping soon after it came up while the broker stays reachable (every reconnect
        works at once). During such an episode the backoff keeps growing; it starts over only after a
        connection stayed up `STABLE_CONNECTION` seconds. A connect that fails, or a broker that refuses
        connections right after it dropped us (`broker_up` False), means the broker itself was down (a
        restart): that is no takeover, and reconnects stay quick as before.
        """
        if not came_up:
            self._quick_losses = 0
            self._takeover = False
            return False
        if self.backoff.reset_after_stable(STABLE_CONNECTION):
            self._quick_losses = 0
            self._takeover = False
            self._takeover_reported = False
            return False
        if not broker_up:
            self._quick_losses = 0
            self._takeover = False
            return False
        self._quick_losses += 1
        if client.disconnect_code == SESSION_TAKEN_OVER or self._quick_losses >= QUICK_LOSSES_BEFORE_TAKEOVER:
            self._takeover = True
        return self._takeover

    async def _broker_still_up(self, client: _Client) -> bool:
        """Whether the broker accepts TCP connections right after it dropped us.

        A takeover drops us from a broker that keeps running; a broker that restarts (a crash, an update)
        refuses connections for a moment. Without this check a broker restarted a few times in quick
        succession looked like a takeover: a false "client id in use" message, and reconnects that
        waited longer each time. A broker that says so (MQTT 5 "session taken over") needs no check.
        """
        if client.disconnect_code == SESSION_TAKEN_OVER:
            return True
        try:
            async with asyncio.timeout(BROKER_PROBE_TIMEOUT):
                _reader, writer = await asyncio.open_connection(self._settings.host, self._settings.port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def _session(self, client: _Client) -> None:
        echo = self._protocol != aiomqtt.ProtocolVersion.V5
        if echo:
            # 3.1.1 acknowledges what an ACL drops: check that our own availability message comes back.
            self._echo_seen.clear()
            await client.subscribe(self._topics.bridge_availability, qos=1)
            _reraise_lost_cancel()
        client.puback_code = 0
        await client.publish(self._topics.bridge_availability, ONLINE, qos=1, retain=True)
        _reraise_lost_cancel()
        self._acknowledged(self._topics.bridge_availability, client.puback_code)
        if echo:
            self._echo_task = asyncio.get_running_loop().create_task(self._watch_echo())
        if self._settings.discovery:
            await client.subscribe(self._topics.ha_status, qos=1)
            _reraise_lost_cancel()
        for topic_filter, subscription in list(self._subscriptions.items()):
            await client.subscribe(topic_filter, qos=subscription.qos)
            _reraise_lost_cancel()
        # Entries left from the last connection are clears only (states are replayed below).
        self._outbox = {t: m for t, m in self._outbox.items() if not m.payload}
        self._client = client
        self.connected.set()
        try:
            await self._serve(client)
        except BaseExceptionGroup as group:
            # The listener or the sender lost the connection: surface that as one plain MqttError.
            lost, other = group.split((aiomqtt.MqttError, OSError))
            if lost is None or other is not None:
                raise
            raise _first_leaf(lost) from None
        except asyncio.CancelledError:
            # Cancelled without shutdown(): our clean DISCONNECT suppresses the Last Will, so say
            # `offline` ourselves, or the retained `online` would outlive the bridge.
            self.connected.clear()
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(
                    client.publish(self._topics.bridge_availability, OFFLINE, qos=1, retain=True),
                    SHUTDOWN_TIMEOUT,
                )
            raise

    async def _serve(self, client: _Client) -> None:
        async with asyncio.TaskGroup() as group:
            listener = group.create_task(self._listen(client))
            self._sender = group.create_task(self._send(client))
            if self._on_connect is not None:
                try:
                    await self._on_connect()
                except Exception:
                    log.exception("mqtt_on_connect_failed")
            self._enqueue_replay()
            await self._stop.wait()
            listener.cancel()
            self._sender.cancel()

    def _connection_lost(self, exc: BaseException, *, taken_over: bool = False) -> None:
        self._disconnected()
        if self._stopping:
            return
        if taken_over:
            if not self._takeover_reported:
                self._takeover_reported = True
                log.error(
                    "mqtt_session_taken_over",
                    reason="another client connects with the same client id, and the broker drops one of the two "
                    "each time",
                    fix="give each bridge its own mqtt.client_id (or leave it empty)",
                    action="reconnecting with a growing backoff",
                    client_id=self._client_id,
                    host=self._settings.host,
                    port=self._settings.port,
                )
            return
        if not self._takeover_reported:
            log.warning(
                "mqtt_connection_lost" if self.messages_published else "mqtt_connection_failed",
                host=self._settings.host,
                port=self._settings.port,
                error=str(exc) or type(exc).__name__,
            )

    def _disconnected(self) -> None:
        if self._echo_task is not None:
            self._echo_task.cancel()
            self._echo_task = None
        self.connected.clear()
        self._once.clear()
        self._transient.clear()
        self._client = None
        self._sender = None
        self._drained.set()
        if self._birth_task is not None:
            self._birth_task.cancel()
            self._birth_task = None

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()

    def _enqueue(self, topic: str, message: _Message) -> None:
        self._outbox.pop(topic, None)  # the newest value goes to the end of the line
        self._outbox[topic] = message
        self._drained.clear()
        self._wakeup.set()

    def _enqueue_replay(self) -> None:
        """Every config, then every last state; one already waiting in the outbox keeps its place."""
        for source in (self._configs, self._states):
            for topic, message in list(source.items()):
                if self._outbox.get(topic) is not message:
                    self._enqueue(topic, message)

    async def _send(self, client: _Client) -> None:
        while True:
            await self._wakeup.wait()
            while self._outbox or self._once or self._transient:
                if self._transient:  # real-time values first: worthless if late
                    topic = next(iter(self._transient))
                    live = self._transient.pop(topic)
                    await client.publish(topic, live.payload, qos=live.qos, retain=live.retain)
                    _reraise_lost_cancel()
                    self.messages_published += 1
                    continue
                if self._once:
                    topic, message = self._once.popleft()
                    client.puback_code = 0
                    await client.publish(topic, message.payload, qos=message.qos, retain=False)
                    _reraise_lost_cancel()
                    self._acknowledged(topic, client.puback_code)
                    continue
                topic, message = next(iter(self._outbox.items()))
                client.puback_code = 0
                await client.publish(topic, message.payload, qos=message.qos, retain=message.retain)
                _reraise_lost_cancel()
                self._acknowledged(topic, client.puback_code)
                if self._outbox.get(topic) is message:
                    del self._outbox[topic]
            self._wakeup.clear()
            self._drained.set()

    async def _subscribe_now(self, client: aiomqtt.Client, topic_filter: str, qos: int) -> None:
        try:
            await client.subscribe(topic_filter, qos=qos)
        except aiomqtt.MqttError as exc:
            # the reconnect that follows a lost connection subscribes again
            log.warning("mqtt_subscribe_failed", topic=topic_filter, error=str(exc))

    async def _unsubscribe_now(self, client: aiomqtt.Client, topic_filter: str) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.unsubscribe(topic_filter)

    def _acknowledged(self, topic: str, code: int) -> None:
        """Count a publish the broker took; report once when it starts refusing them (MQTT 5 PUBACK)."""
        if code < 128:
            self.messages_published += 1
            if topic in self._refused_topics:
                self._refused_topics.discard(topic)
                if not self._refused_topics:
                    self.refusal = None
                    log.info("mqtt_messages_accepted_again")
            return
        self.messages_refused += 1
        first = not self._refused_topics
        self._refused_topics.add(topic)
        if first:
            reason = "not authorized" if code == 135 else f"reason code {code}"
            self._refuse(
                f"the broker refuses our messages ({reason}), e.g. on {topic}",
                topic=topic,
                reason=reason,
            )

    def _refuse(self, refusal: str, **context: Any) -> None:
        self.refusal = refusal
        log.error(
            "mqtt_messages_refused",
            effect="our messages are not delivered",
            fix=f"allow this client to publish under {self._topics.base}/# and "
            f"{self._topics.discovery_prefix}/# in the broker's ACL",
            problem=refusal,
            client_id=self._client_id,
            username=self._settings.username or None,
            **context,
        )

    async def _watch_echo(self) -> None:
        try:
            await asyncio.wait_for(self._echo_seen.wait(), ECHO_TIMEOUT)
        except TimeoutError:
            if self.refusal is None and self.connected.is_set():
                topic = self._topics.bridge_availability
                self._refuse(
                    f"our own message on {topic} did not come back within {ECHO_TIMEOUT:.0f} s "
                    "(an MQTT 3.1.1 broker acknowledges what its ACL drops)",
                    topic=topic,
                )

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            own = message.topic.matches(self._topics.bridge_availability)
            if own and not message.retain and message.payload in (ONLINE, "online"):
                self._echo_seen.set()
                if self.refusal is not None and not self._refused_topics:
                    self.refusal = None
                    log.info("mqtt_messages_delivered_again")
            if message.topic.matches(self._topics.ha_status):
                if self._settings.discovery and message.payload in (ONLINE, "online"):
                    self._home_assistant_born()
                continue
            self._dispatch(message)

    def _dispatch(self, message: aiomqtt.Message) -> None:
        raw = message.payload
        payload = bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw or "").encode("utf-8")
        incoming = IncomingMessage(message.topic.value, payload, bool(message.retain))
        for topic_filter, subscription in list(self._subscriptions.items()):
            if not message.topic.matches(topic_filter):
                continue
            try:
                subscription.handler(incoming)
            except Exception:
                log.exception("mqtt_message_handler_failed", topic=incoming.topic)

    def _home_assistant_born(self) -> None:
        self.ha_births += 1
        low, high = self._ha_birth_delay
        self._birth_deadline = self._clock.monotonic() + random.uniform(low, high)
        if self._birth_task is None or self._birth_task.done():
            log.info("home_assistant_started", action="republishing discovery and states soon")
            self._birth_task = asyncio.get_running_loop().create_task(self._republish_after_birth())

    async def _republish_after_birth(self) -> None:
        # Later births push the deadline out, so a burst of births ends in one republish; a birth that
        # arrives while the republish runs gets its own (Home Assistant may have restarted again).
        while True:
            while (remaining := self._birth_deadline - self._clock.monotonic()) > 0:
                await self._clock.sleep(remaining)
            seen = self.ha_births
            self.ha_republishes += 1
            await self.republish_all()
            if self.ha_births == seen:
                return


def _reraise_lost_cancel() -> None:
    """Raise the cancellation that an aiomqtt call swallowed.

    aiomqtt waits for the broker's acknowledgement with ``asyncio.wait_for``; on Python 3.11 that returns
    the result instead of raising when the cancel lands just as the acknowledgement arrives. The task
    stays "cancelling" but runs on: the sender then waited forever for work, and the task group that
    cancelled it (a reconnect, ``shutdown()``, SIGTERM) waited forever for the sender.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
