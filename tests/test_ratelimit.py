"""Per-key rate limits: the token bucket of ``bundlegate.ratelimit``."""

from __future__ import annotations

import pytest

from bundlegate.errors import RateLimited
from bundlegate.ratelimit import RateLimiter
from fake_clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_rate_limiter_allows_a_burst_then_says_when_to_retry(clock: FakeClock) -> None:
    limiter = RateLimiter(2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.check("web")
    with pytest.raises(RateLimited) as exc:
        limiter.check("web")
    assert exc.value.code == "rate_limited"
    assert exc.value.retry_after == 1
    limiter.check("other")  # buckets are per key
    clock.advance(0.5)
    limiter.check("web")  # one token back after 1/rate seconds
    with pytest.raises(RateLimited):
        limiter.check("web")


def test_slow_rates_give_a_longer_retry_after(clock: FakeClock) -> None:
    limiter = RateLimiter(0.1, clock=clock)
    limiter.check("web")
    with pytest.raises(RateLimited) as exc:
        limiter.check("web")
    assert exc.value.retry_after == 10


def test_rate_limit_zero_is_off(clock: FakeClock) -> None:
    limiter = RateLimiter(0, clock=clock)
    assert not limiter.enabled
    for _ in range(1000):
        limiter.check("web")


def test_rate_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimiter(-1)
    with pytest.raises(ValueError):
        RateLimiter(float("nan"))
