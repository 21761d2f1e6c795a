"""The health listener over real HTTP: liveness, readiness, Prometheus metrics, default bind address."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from envoy2mqtt.config import HealthSettings
from envoy2mqtt.errors import BadEnvoyData, EnvoyAuthError, EnvoyNotFound, EnvoyUnreachable, TokenRejected
from envoy2mqtt.health import HealthServer
from envoy2mqtt.metrics import Metrics, error_kind
from tests.conftest import free_port

Readiness = Callable[[], tuple[bool, dict[str, Any]]]


class Switch:
    """A readiness callback whose answer the test flips."""

    def __init__(self) -> None:
        self.ready = False
        self.detail: dict[str, Any] = {"mqtt": "connected", "envoys": {"garage": "no successful poll yet"}}

    def __call__(self) -> tuple[bool, dict[str, Any]]:
        return self.ready, self.detail


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def started(metrics: Metrics, readiness: Readiness, **settings: Any) -> HealthServer:
    server = HealthServer(HealthSettings(enabled=True, port=free_port(), **settings), metrics, readiness)
    await server.start()
    return server


async def test_healthz_answers_ok(metrics: Metrics, http: aiohttp.ClientSession) -> None:
    server = await started(metrics, Switch())
    try:
        async with http.get(f"http://127.0.0.1:{server.port}/healthz") as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            assert await response.json() == {"status": "ok"}
    finally:
        await server.stop()


async def test_readyz_follows_the_callback(metrics: Metrics, http: aiohttp.ClientSession) -> None:
    switch = Switch()
    server = await started(metrics, switch)
    url = f"http://127.0.0.1:{server.port}/readyz"
    try:
        async with http.get(url) as response:
            assert response.status == 503
            body = await response.json()
        assert body["status"] == "not ready"
        assert body["envoys"] == {"garage": "no successful poll yet"}
        assert body["mqtt"] == "connected"

        switch.ready = True
        switch.detail = {"mqtt": "connected", "envoys": {"garage": "polled 12 s ago"}}
        async with http.get(url) as response:
            assert response.status == 200
            body = await response.json()
        assert body == {"status": "ready", "mqtt": "connected", "envoys": {"garage": "polled 12 s ago"}}
    finally:
        await server.stop()


async def test_readyz_redacts_secrets_in_the_detail(metrics: Metrics, http: aiohttp.ClientSession) -> None:
    switch = Switch()
    switch.detail = {
        "auth": "Envoy refused Authorization: Bearer abcdefghijklmnop",
        "envoy": {"token": "eyJhbGciOiJFUzI1NiJ9.eyJhdWQiOiIxMjMifQ.c2lnbmF0dXJl"},
    }
    server = await started(metrics, switch)
    try:
        async with http.get(f"http://127.0.0.1:{server.port}/readyz") as response:
            assert response.status == 503
            text = await response.text()
    finally:
        await server.stop()
    assert "abcdefghijklmnop" not in text
    assert "eyJhbGciOiJFUzI1NiJ9" not in text
    assert "***" in text


async def test_readyz_with_a_failing_callback_is_not_ready(
    metrics: Metrics, http: aiohttp.ClientSession
) -> None:
    def broken() -> tuple[bool, dict[str, Any]]:
        raise RuntimeError("state not built yet")

    server = await started(metrics, broken)
    try:
        async with http.get(f"http://127.0.0.1:{server.port}/readyz") as response:
            assert response.status == 503
            assert (await response.json())["status"] == "error"
        # the listener survived the broken callback
        async with http.get(f"http://127.0.0.1:{server.port}/healthz") as response:
            assert response.status == 200
    finally:
        await server.stop()


async def test_metrics_page_is_prometheus_text(metrics: Metrics, http: aiohttp.ClientSession) -> None:
    metrics.poll_duration.labels(envoy="garage", endpoint="/production.json").observe(0.42)
    metrics.record_error("garage", error_kind(EnvoyUnreachable("timed out")))
    metrics.record_error("garage", "nonsense")
    metrics.token_expiry_seconds.labels(envoy="garage").set(86400 * 200)
    metrics.sync_published(40)
    metrics.sync_published(45)
    metrics.mqtt_reconnects.inc()
    metrics.last_successful_poll.labels(envoy="garage", cadence="system").set(1_790_000_000)

    server = await started(metrics, Switch())
    try:
        async with http.get(f"http://127.0.0.1:{server.port}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
    finally:
        await server.stop()

    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert {
        "envoy2mqtt_poll_duration_seconds",
        "envoy2mqtt_poll_errors",
        "envoy2mqtt_token_expiry_seconds",
        "envoy2mqtt_messages_published",
        "envoy2mqtt_mqtt_reconnects",
        "envoy2mqtt_last_successful_poll_timestamp_seconds",
    } <= set(families)

    def value(family: str, sample_name: str, **labels: str) -> float:
        for sample in families[family].samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
        raise AssertionError(f"no sample {sample_name} {labels}")

    assert value("envoy2mqtt_poll_duration_seconds", "envoy2mqtt_poll_duration_seconds_count") == 1
    assert value("envoy2mqtt_poll_duration_seconds", "envoy2mqtt_poll_duration_seconds_sum") == 0.42
    assert value("envoy2mqtt_poll_errors", "envoy2mqtt_poll_errors_total", kind="unreachable") == 1
    assert value("envoy2mqtt_poll_errors", "envoy2mqtt_poll_errors_total", kind="other") == 1
    assert value("envoy2mqtt_token_expiry_seconds", "envoy2mqtt_token_expiry_seconds") == 86400 * 200
    assert value("envoy2mqtt_messages_published", "envoy2mqtt_messages_published_total") == 45
    assert value("envoy2mqtt_mqtt_reconnects", "envoy2mqtt_mqtt_reconnects_total") == 1
    assert (
        value(
            "envoy2mqtt_last_successful_poll_timestamp_seconds",
            "envoy2mqtt_last_successful_poll_timestamp_seconds",
            cadence="system",
        )
        == 1_790_000_000
    )


def test_published_count_restarting_from_zero_is_all_new(metrics: Metrics) -> None:
    metrics.sync_published(10)
    metrics.sync_published(10)
    metrics.sync_published(3)  # the publisher started again
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    (total,) = [s for s in families["envoy2mqtt_messages_published"].samples if s.name.endswith("_total")]
    assert total.value == 13


def test_two_metrics_objects_do_not_share_a_registry() -> None:
    first, second = Metrics(), Metrics()
    first.mqtt_reconnects.inc()
    assert b"envoy2mqtt_mqtt_reconnects_total 1.0" in first.render()
    assert b"envoy2mqtt_mqtt_reconnects_total 0.0" in second.render()


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (EnvoyUnreachable("refused"), "unreachable"),
        (EnvoyAuthError("401"), "auth"),
        (TokenRejected("expired"), "auth"),
        (BadEnvoyData("html"), "bad_data"),
        (EnvoyNotFound("gone", 404), "http"),
        (ValueError("bug"), "other"),
    ],
)
def test_error_kind(exc: BaseException, kind: str) -> None:
    assert error_kind(exc) == kind


def refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


async def test_binds_loopback_only_by_default(metrics: Metrics) -> None:
    assert HealthSettings().host == "127.0.0.1"
    assert HealthSettings().enabled is False
    # 127.0.0.2 is loopback too on Linux: it reaches a wildcard listener but not one bound to 127.0.0.1
    server = await started(metrics, Switch())
    try:
        assert not refused("127.0.0.1", server.port)
        assert refused("127.0.0.2", server.port)
    finally:
        await server.stop()
    wildcard = await started(metrics, Switch(), host="0.0.0.0")
    try:
        assert not refused("127.0.0.2", wildcard.port)
    finally:
        await wildcard.stop()


async def test_port_zero_picks_a_free_port_and_stop_closes_it(
    metrics: Metrics, http: aiohttp.ClientSession
) -> None:
    server = HealthServer(HealthSettings(enabled=True), metrics, Switch(), port=0)
    await server.start()
    port = server.port
    assert port != 0
    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
        assert response.status == 200
    await server.stop()
    assert refused("127.0.0.1", port)


async def test_a_busy_port_raises(metrics: Metrics) -> None:
    async with HealthServer(HealthSettings(enabled=True), metrics, Switch(), port=0) as first:
        second = HealthServer(HealthSettings(enabled=True, port=first.port), metrics, Switch())
        with pytest.raises(OSError):
            await second.start()
