"""Unhandled errors reach the log with their traceback at a bounded rate, and every one is counted."""

from __future__ import annotations

import logging

import pytest

from bundlegate.http.tracebacks import TracebackLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _boom(i: int) -> Exception:
    try:
        raise RuntimeError(f"failure {i}")
    except RuntimeError as e:
        return e


def test_at_most_the_budget_is_logged_a_minute_and_every_error_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    counted: list[None] = []
    tracebacks = TracebackLog(3, lambda: counted.append(None), clock)
    with caplog.at_level(logging.ERROR, logger="bundlegate.http"):
        for i in range(10):
            tracebacks.log(_boom(i), f"req-{i}")
            clock.now += 1
        clock.now += 60  # a new minute: the next error is logged, after a line for the unlogged ones
        tracebacks.log(_boom(10), "req-10")
    logged = [r for r in caplog.records if r.exc_info]
    assert [r.getMessage() for r in logged] == [
        f"unhandled error, request_id=req-{i}: RuntimeError" for i in (0, 1, 2, 10)
    ]
    summaries = [r.getMessage() for r in caplog.records if not r.exc_info]
    assert len(summaries) == 1
    assert summaries[0].startswith("7 more unhandled errors were not logged in the last minute")
    assert len(counted) == 11
