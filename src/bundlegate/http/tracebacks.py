"""Unhandled errors in the log at a bounded rate: ``TracebackLog``.

A request that reaches a traceback (a 500) is logged with it and its request id. A client that can
trigger one at will could otherwise fill the disk and spend the event loop formatting tracebacks,
so at most ``per_minute`` are logged in a minute; the rest of that minute's errors are counted and
named in one line when the next error after the minute arrives. Every one is counted in
``bundlegate_unhandled_errors_total`` (``on_error``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger("bundlegate.http")

WINDOW_S = 60.0


class TracebackLog:
    """See the module docstring. ``clock`` is ``time.monotonic`` unless a test gives another."""

    def __init__(
        self,
        per_minute: int,
        on_error: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.on_error = on_error
        self.clock = clock
        self._window_start = clock()
        self._logged = 0
        self._unlogged = 0

    def log(self, exc: BaseException, request_id: str) -> None:
        """Count ``exc``; log it with its traceback unless this minute's budget is spent."""
        if self.on_error is not None:
            self.on_error()
        now = self.clock()
        if now - self._window_start >= WINDOW_S:
            if self._unlogged:
                logger.error(
                    "%d more unhandled errors were not logged in the last minute "
                    "(at most %d a minute: --max-tracebacks-per-minute)",
                    self._unlogged,
                    self.per_minute,
                )
            self._window_start, self._logged, self._unlogged = now, 0, 0
        if self._logged >= self.per_minute:
            self._unlogged += 1
            return
        self._logged += 1
        logger.error(
            "unhandled error, request_id=%s: %s",
            request_id,
            type(exc).__name__,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
