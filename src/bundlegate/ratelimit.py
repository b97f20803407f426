"""Per-key rate limits (DESIGN.md §6): a token bucket per API key id, for the whole gateway.

Turned on by ``--rate-limit-rps`` (``BUNDLEGATE_RATE_LIMIT_RPS``); a request over its key's rate gets
429 with ``Retry-After`` (``RateLimited``). The rate is per key across every worker of
``bundle serve --workers N``: the workers keep their buckets in one shared file (``SharedRateLimiter``,
in the directory the workers already share for their metrics), so N workers do not allow N times the
rate. One process keeps them in memory (``RateLimiter``). ``rate_limiter_for_process`` picks.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from bundlegate.errors import RateLimited

SHARED_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # the directory the workers of --workers N share
SHARED_FILE = "rate-limit-buckets"


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
        self._refuse(tokens)

    def _refuse(self, tokens: float) -> None:
        raise RateLimited(
            "rate limit exceeded for this API key", retry_after=math.ceil((1.0 - tokens) / self.rate)
        )


_SLOT = struct.Struct("<Qdd")  # key hash (0: free), tokens, last refill time (CLOCK_MONOTONIC)
SLOTS = 4096


class SharedRateLimiter(RateLimiter):
    """``RateLimiter`` with its buckets in a file that several processes map: a table of ``SLOTS``
    slots (key hash, tokens, last refill), found by open addressing on a 64-bit hash of the key id,
    updated under an exclusive ``lockf`` of the file (held for a few microseconds per request). The
    monotonic clock is the machine's, the same in every process. More key ids than slots share the
    last slot's bucket (a keys file holds far fewer)."""

    def __init__(
        self,
        path: Path,
        rate_per_s: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(rate_per_s, burst, clock=clock)
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            size = SLOTS * _SLOT.size
            fcntl.lockf(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size < size:
                    os.ftruncate(fd, size)  # zeros: every slot free
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def check(self, key_id: str) -> None:
        if self.rate <= 0:
            return
        key = int.from_bytes(hashlib.blake2b(key_id.encode(), digest_size=8).digest(), "little") or 1
        start = key % SLOTS
        with self._lock:  # threads of this process, then the other processes
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                now = self._clock()
                offset = 0
                tokens = self.burst
                for i in range(SLOTS):
                    offset = ((start + i) % SLOTS) * _SLOT.size
                    owner, saved, last = _SLOT.unpack_from(self._map, offset)
                    if owner == key:
                        tokens = min(self.burst, saved + (now - last) * self.rate)
                        break
                    if owner == 0:
                        break
                if tokens >= 1.0:
                    _SLOT.pack_into(self._map, offset, key, tokens - 1.0, now)
                    return
                _SLOT.pack_into(self._map, offset, key, tokens, now)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)
        self._refuse(tokens)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


def rate_limiter_for_process(rate_per_s: float, environ: Mapping[str, str] | None = None) -> RateLimiter:
    """The limiter of this process: shared with the other workers where they share a directory
    (``bundle serve --workers N``), in memory otherwise (or when the limit is off)."""
    environ = os.environ if environ is None else environ
    directory = environ.get(SHARED_DIR_ENV)
    if rate_per_s > 0 and directory and Path(directory).is_dir():
        return SharedRateLimiter(Path(directory) / SHARED_FILE, rate_per_s)
    return RateLimiter(rate_per_s)
