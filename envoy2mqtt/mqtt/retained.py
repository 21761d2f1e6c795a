"""A short-lived MQTT read of retained messages: what the broker still holds of what we published.

Used once at start when the counter state file is missing or unusable: the bridge's own retained state
topics carry the last published lifetime values, so a lost file does not make a counter go backwards.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import aiomqtt

from envoy2mqtt.config import MqttSettings
from envoy2mqtt.errors import MqttError
from envoy2mqtt.mqtt.publisher import _tls_context

READ_TIMEOUT = 5.0  # at most this long in all (connect, subscribe, collect)
QUIET = 0.25  # retained messages come right after SUBACK: stop after this long without a new one


class RetainedReadError(Exception):
    """The broker could not be read (unreachable, refused, timed out): the message says why."""


async def read_retained(
    settings: MqttSettings, topic_filter: str, *, within: float = READ_TIMEOUT, quiet: float = QUIET
) -> dict[str, bytes]:
    """Every retained message under `topic_filter` (topic -> payload); RetainedReadError on failure."""
    try:
        tls = _tls_context(settings)
    except MqttError as exc:
        raise RetainedReadError(str(exc)) from None
    base = settings.client_id or "envoy2mqtt"
    client = aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username or None,
        password=settings.password.get_secret_value() or None,
        identifier=f"{base[:40]}-read-{secrets.token_hex(3)}",
        keepalive=settings.keepalive,
        tls_context=tls,
        timeout=within,
    )
    found: dict[str, bytes] = {}
    deadline = time.monotonic() + within
    try:
        async with asyncio.timeout(within), client:
            await client.subscribe(topic_filter, qos=1)
            messages = aiter(client.messages)
            while True:
                wait = min(quiet, deadline - time.monotonic())
                if wait <= 0:
                    break
                try:
                    message = await asyncio.wait_for(anext(messages), wait)
                except TimeoutError:
                    break
                if not message.retain:
                    continue
                payload = message.payload if isinstance(message.payload, bytes) else b""
                if payload:
                    found[str(message.topic)] = payload
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        if not found:
            raise RetainedReadError(str(exc) or type(exc).__name__) from None
    return found
