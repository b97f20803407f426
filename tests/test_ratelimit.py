"""Per-key rate limits: the token bucket of ``bundlegate.ratelimit``."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundlegate.errors import RateLimited
from bundlegate.ratelimit import SHARED_DIR_ENV, RateLimiter, SharedRateLimiter, rate_limiter_for_process
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


def test_shared_limiters_on_one_file_share_each_keys_budget(clock: FakeClock, tmp_path: Path) -> None:
    """Two workers' limiters map one file: together they allow the rate once, not twice."""
    path = tmp_path / "buckets"
    first = SharedRateLimiter(path, 1.0, burst=2, clock=clock)
    second = SharedRateLimiter(path, 1.0, burst=2, clock=clock)
    try:
        first.check("web")
        second.check("web")
        for limiter in (first, second):
            with pytest.raises(RateLimited):
                limiter.check("web")
        second.check("batch")  # another key, its own bucket
        clock.advance(1.0)
        first.check("web")  # one token back for both
        with pytest.raises(RateLimited):
            second.check("web")
    finally:
        first.close()
        second.close()


def test_rate_limiter_for_process_shares_only_where_workers_share_a_directory(tmp_path: Path) -> None:
    assert type(rate_limiter_for_process(5.0, {})) is RateLimiter
    assert type(rate_limiter_for_process(0.0, {SHARED_DIR_ENV: str(tmp_path)})) is RateLimiter
    shared = rate_limiter_for_process(5.0, {SHARED_DIR_ENV: str(tmp_path)})
    assert isinstance(shared, SharedRateLimiter)
    shared.close()
