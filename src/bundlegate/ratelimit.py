"""Per-key rate limits (DESIGN.md §6): ``RateLimiter``, a token bucket per API key id.

Turned on by ``--rate-limit-rps`` (``BUNDLEGATE_RATE_LIMIT_RPS``); a request over its key's rate gets
429 with ``Retry-After`` (``RateLimited``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from bundlegate.errors import RateLimited


class RateLimiter:
    """A token bucket per key id: ``rate_per_s`` tokens a second, at most ``burst`` saved up (default:
    one second's worth, at least 1). A rate of 0 turns it off. Key ids come from the keys file, so the
    number of buckets is bounded by the number of keys."""

    def __init__(
        self,
        rate_per_s: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s < 0 or not math.isfinite(rate_per_s):
            raise ValueError("rate_per_s must be a finite number >= 0")
        self.rate = rate_per_s
        self.burst = burst if burst is not None else max(1.0, rate_per_s)
        if self.burst < 1:
            raise ValueError("burst must be >= 1")
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}  # key id -> [tokens, last refill time]
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def check(self, key_id: str) -> None:
        """Take one token for ``key_id`` or raise ``RateLimited`` whose ``retry_after`` (seconds, at
        least 1, a whole number for the ``Retry-After`` header) is when the next token is due."""
        if self.rate <= 0:
            return
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = self._buckets[key_id] = [self.burst, now]
            tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return
            bucket[0] = tokens
        raise RateLimited(
            "rate limit exceeded for this API key", retry_after=math.ceil((1.0 - tokens) / self.rate)
        )
