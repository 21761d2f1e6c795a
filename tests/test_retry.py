"""The one retry policy: capped, jittered exponential backoff, reset on success or after a stable run."""

from __future__ import annotations

import pytest

from envoy2mqtt.clock import ManualClock
from envoy2mqtt.retry import RetryPolicy


def test_delays_double_up_to_the_cap_without_jitter() -> None:
    policy = RetryPolicy(initial=5.0, cap=60.0, jitter=(1.0, 1.0))
    assert [policy.failed() for _ in range(6)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert policy.failures == 6


def test_jitter_stays_within_its_bounds_and_varies() -> None:
    policy = RetryPolicy(initial=1.0, cap=60.0, jitter=(0.5, 1.0))
    delays = [policy.delay(n) for n in range(12)]
    assert all(0.5 <= d <= 60.0 for d in delays)
    assert min(delays[8:]) >= 30.0  # capped: jitter stays within [cap/2, cap]
    assert len({round(policy.delay(10), 6) for _ in range(20)}) > 1


def test_injected_uniform_makes_the_jitter_exact() -> None:
    policy = RetryPolicy(initial=2.0, cap=100.0, jitter=(0.8, 1.2), uniform=lambda low, high: high)
    assert policy.failed() == pytest.approx(2.4)
    assert policy.failed() == pytest.approx(4.8)


def test_success_starts_over() -> None:
    policy = RetryPolicy(initial=1.0, cap=10.0, jitter=(1.0, 1.0))
    for _ in range(5):
        policy.failed()
    policy.succeeded()
    assert policy.failures == 0
    assert policy.failed() == 1.0


def test_huge_failure_counts_do_not_overflow() -> None:
    policy = RetryPolicy(initial=1.0, cap=300.0, jitter=(1.0, 1.0))
    assert policy.ceiling(10_000) == 300.0


def test_reset_after_stable_only_when_the_connection_stayed_up() -> None:
    clock = ManualClock()
    policy = RetryPolicy(initial=1.0, cap=60.0, jitter=(1.0, 1.0), clock=clock)
    for _ in range(4):
        policy.failed()
    policy.started()
    clock.advance(5)  # a broker that accepts and drops us at once: the backoff keeps growing
    assert not policy.reset_after_stable(30)
    assert policy.failed() == 16.0
    policy.started()
    clock.advance(31)
    assert policy.reset_after_stable(30)
    assert policy.failed() == 1.0


def test_reset_after_stable_without_start_keeps_the_count() -> None:
    policy = RetryPolicy(initial=1.0, cap=60.0, jitter=(1.0, 1.0))
    policy.failed()
    assert not policy.reset_after_stable(0)
    assert policy.failures == 1


@pytest.mark.parametrize(
    ("initial", "cap", "jitter"),
    [(0.0, 1.0, (1.0, 1.0)), (5.0, 1.0, (1.0, 1.0)), (1.0, 2.0, (0.0, 1.0)), (1.0, 2.0, (1.2, 0.8))],
)
def test_nonsense_settings_are_refused(initial: float, cap: float, jitter: tuple[float, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(initial=initial, cap=cap, jitter=jitter)
