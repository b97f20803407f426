"""When a version that failed to load is tried again, and whether its failure is news: ``LoadRetries``.

    retries = LoadRetries()
    if retries.due(key, path):            # the files changed, or the back-off has passed
        ...load...
        news = retries.failed(key, path, reason)   # log only when news: once per change
        retries.succeeded(key)

A failed version is tried again after 1, 2, 4 ... seconds, at most ``MAX_BACKOFF_S`` apart, so a
corrupt bundle is not re-hashed on every reload tick; a change to its files (names, sizes, mtimes)
makes it due at once. Its failure is reported once per change of the files or of the reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 300.0

Key = tuple[str, int]
Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(path: Path) -> Fingerprint:
    """The names, sizes and mtimes of the files of a version directory (empty when unreadable)."""
    try:
        with os.scandir(path) as it:
            stats = [(e.name, e.stat(follow_symlinks=False)) for e in it]
    except OSError:
        return ()
    return tuple(sorted((name, st.st_size, st.st_mtime_ns) for name, st in stats))


@dataclass(slots=True)
class _Failure:
    files: Fingerprint
    reason: str
    attempts: int
    next_at: float


class LoadRetries:
    """See the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[Key, _Failure] = {}

    def due(self, key: Key, path: Path) -> bool:
        """Whether to try loading ``key`` now: never failed, its files changed, or the back-off passed."""
        failure = self._failures.get(key)
        if failure is None:
            return True
        return failure.files != fingerprint(path) or self._clock() >= failure.next_at

    def failed(self, key: Key, path: Path, reason: str) -> bool:
        """Record a failure; True when it is news (first failure, other files, another reason)."""
        files = fingerprint(path)
        old = self._failures.get(key)
        news = old is None or old.files != files or old.reason != reason
        attempts = 1 if news or old is None else old.attempts + 1
        backoff = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (attempts - 1))
        self._failures[key] = _Failure(files, reason, attempts, self._clock() + backoff)
        return news

    def forget(self, key: Key) -> None:
        """The version loaded, or left the repository."""
        self._failures.pop(key, None)
