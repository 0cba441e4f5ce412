"""RetryPolicy: the exponential schedule, its cap, the jitter bounds, and bad settings."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitoring.notify.retry import RetryPolicy


def test_default_schedule_doubles_from_one_second_up_to_five_minutes() -> None:
    p = RetryPolicy()
    assert [p.base_ms(n) for n in range(1, 11)] == [
        1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000]
    assert p.base_ms(10_000) == 300_000  # no float overflow far past the cap


def test_without_jitter_the_delay_is_the_base() -> None:
    p = RetryPolicy(initial_ms=500, factor=3.0, max_ms=10_000, jitter=0.0)
    rng = random.Random(1)
    assert [p.delay_ms(n, rng) for n in range(1, 6)] == [500, 1500, 4500, 10000, 10000]


def test_jitter_takes_up_to_its_fraction_off_and_spreads_the_delays() -> None:
    p = RetryPolicy(initial_ms=1000, jitter=0.2)
    rng = random.Random(7)
    delays = [p.delay_ms(3, rng) for _ in range(200)]
    assert p.bounds_ms(3) == (3200, 4000)
    assert all(3200 <= d <= 4000 for d in delays)
    assert len(set(delays)) > 100  # spread, not one value
    assert min(delays) < 3400 and max(delays) > 3800


@given(attempt=st.integers(1, 60), seed=st.integers(0, 2**32 - 1),
       initial=st.integers(1, 10_000), factor=st.floats(1.0, 10.0),
       jitter=st.floats(0.0, 0.99))
def test_delay_is_always_within_bounds_and_never_above_the_cap(
        attempt: int, seed: int, initial: int, factor: float, jitter: float) -> None:
    p = RetryPolicy(initial_ms=initial, factor=factor, max_ms=initial * 50, jitter=jitter)
    low, high = p.bounds_ms(attempt)
    d = p.delay_ms(attempt, random.Random(seed))
    assert 1 <= low <= d <= high <= p.max_ms


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"initial_ms": 0}, "initial_ms must be at least 1"),
    ({"factor": 0.5}, "factor must be at least 1.0"),
    ({"max_ms": 10}, "max_ms (10) must be at least initial_ms (1000)"),
    ({"jitter": 1.0}, "jitter must be in [0, 1)"),
    ({"expire_ms": 0}, "expire_ms must be at least 1"),
])
def test_bad_settings_are_refused_with_the_field_named(kwargs: dict[str, float],
                                                        needle: str) -> None:
    with pytest.raises(ValueError) as info:
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_attempts_are_one_based() -> None:
    with pytest.raises(ValueError, match="1-based"):
        RetryPolicy().base_ms(0)
