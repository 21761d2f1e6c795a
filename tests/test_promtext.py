"""envoy2mqtt.promtext writes what Prometheus reads: checked with prometheus-client's own parser."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from envoy2mqtt.promtext import CollectorRegistry, Counter, Gauge, Histogram, format_value, generate_latest


def parse(registry: CollectorRegistry) -> dict[str, object]:
    return {
        family.name: family for family in text_string_to_metric_families(generate_latest(registry).decode())
    }


def samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        out += [(s.name, dict(s.labels), s.value) for s in family.samples]
    return out


def test_counter_gauge_histogram_round_trip_through_the_reference_parser() -> None:
    registry = CollectorRegistry()
    errors = Counter("poll_errors", "Failed polls", ["envoy", "kind"], namespace="e2m", registry=registry)
    reconnects = Counter("reconnects_total", "Reconnections", namespace="e2m", registry=registry)
    expiry = Gauge("token_expiry_seconds", "Seconds left", ["envoy"], namespace="e2m", registry=registry)
    duration = Histogram(
        "poll_duration_seconds", "Duration", ["envoy"], namespace="e2m", registry=registry, buckets=(0.1, 1.0)
    )
    errors.labels(envoy="garage", kind="auth").inc()
    errors.labels("garage", "auth").inc(2)
    errors.labels(envoy="roof", kind="http").inc()
    reconnects.inc()
    expiry.labels(envoy="garage").set(-5.5)
    expiry.labels(envoy="roof").set(1_790_000_000)
    for value in (0.05, 0.1, 0.5, 3.0):
        duration.labels(envoy="garage").observe(value)

    families = parse(registry)
    assert {name: f.type for name, f in families.items()} == {  # type: ignore[attr-defined]
        "e2m_poll_errors": "counter",
        "e2m_reconnects": "counter",
        "e2m_token_expiry_seconds": "gauge",
        "e2m_poll_duration_seconds": "histogram",
    }
    assert families["e2m_poll_errors"].documentation == "Failed polls"  # type: ignore[attr-defined]
    got = samples(registry)
    assert ("e2m_poll_errors_total", {"envoy": "garage", "kind": "auth"}, 3.0) in got
    assert ("e2m_poll_errors_total", {"envoy": "roof", "kind": "http"}, 1.0) in got
    assert ("e2m_reconnects_total", {}, 1.0) in got
    assert ("e2m_token_expiry_seconds", {"envoy": "garage"}, -5.5) in got
    assert ("e2m_token_expiry_seconds", {"envoy": "roof"}, 1_790_000_000.0) in got
    buckets = {s[1]["le"]: s[2] for s in got if s[0] == "e2m_poll_duration_seconds_bucket"}
    assert buckets == {"0.1": 2.0, "1.0": 3.0, "+Inf": 4.0}, "cumulative, +Inf added"
    assert ("e2m_poll_duration_seconds_count", {"envoy": "garage"}, 4.0) in got
    (total,) = [s[2] for s in got if s[0] == "e2m_poll_duration_seconds_sum"]
    assert total == pytest.approx(3.65)


def test_label_values_and_help_are_escaped() -> None:
    registry = CollectorRegistry()
    odd = 'a "quoted"\\path\nnext line, {braces}=1'
    gauge = Gauge("odd", 'Help with \\ and\nnewline "quotes"', ["endpoint"], registry=registry)
    gauge.labels(endpoint=odd).set(1)
    (family,) = text_string_to_metric_families(generate_latest(registry).decode())
    assert family.documentation == 'Help with \\ and\nnewline "quotes"'
    assert family.samples[0].labels == {"endpoint": odd}


def test_an_unused_labelled_metric_is_described_without_samples() -> None:
    registry = CollectorRegistry()
    Counter("never", "Never incremented", ["envoy"], registry=registry)
    text = generate_latest(registry).decode()
    assert text == "# HELP never_total Never incremented\n# TYPE never_total counter\n"
    assert parse(registry)["never"].samples == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1.0"), (0.05, "0.05"), (math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN")],
)
def test_values_are_float_literals_prometheus_reads(value: float, text: str) -> None:
    assert format_value(value) == text


def test_misuse_is_refused() -> None:
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["envoy"], registry=registry)
    with pytest.raises(ValueError, match="only goes up"):
        counter.labels(envoy="x").inc(-1)
    with pytest.raises(ValueError, match="has labels"):
        counter.inc()
    with pytest.raises(ValueError, match="takes the labels envoy"):
        counter.labels(kind="x")
    with pytest.raises(ValueError, match="takes 1 label values"):
        counter.labels("a", "b")
    with pytest.raises(ValueError, match="duplicate metric name"):
        Counter("c", "again", registry=registry)
    with pytest.raises(ValueError, match="invalid metric name"):
        Gauge("bad-name", "x", registry=registry)
    with pytest.raises(ValueError, match="invalid label name"):
        Histogram("h", "x", ["le"], registry=registry)
    unlabelled = Gauge("g", "g", registry=registry)
    with pytest.raises(ValueError, match="has no labels"):
        unlabelled.labels("x")
    unlabelled.inc(3)
    unlabelled.dec()
    assert ("g", {}, 2.0) in samples(registry)


def test_registries_are_independent() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    Counter("same", "x", registry=first).inc()
    Counter("same", "x", registry=second)
    assert ("same_total", {}, 1.0) in samples(first)
    assert ("same_total", {}, 0.0) in samples(second)
