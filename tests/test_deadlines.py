"""A deadline stops the inference it belongs to: onnxruntime's run is terminated, and the requests
behind a stuck call are answered without waiting for it (real onnxruntime, the ``slow`` bundle)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bundle_factory import slow_model, write
from bundlegate.errors import DeadlineExceeded
from bundlegate.registry import ModelRegistry
from bundlegate.settings import Settings

STUCK = 1e7  # loop trips: seconds of onnxruntime
STUCK_ALONE_S = 5.0  # far less than a stuck call takes, far more than a quick one


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[ModelRegistry]:
    write(tmp_path, slow_model())
    # inline_max_s=0: every call goes to the thread pool, where a deadline can stop it
    registry = ModelRegistry(tmp_path, Settings(), inline_max_s=0.0, run_in_threads=True)
    await registry.start()
    yield registry
    await registry.drain(timeout=5)


async def test_a_stuck_call_ends_at_its_deadline_and_the_next_request_is_answered(
    registry: ModelRegistry,
) -> None:
    loaded = registry.get("slow")
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await loaded.queue.submit(loaded.schema.from_record([STUCK]), started + 0.2)
    # the canary queues behind the stuck call's batch: it is answered only once that call has ended
    canary = await loaded.queue.submit(loaded.schema.from_record([3.0]), time.monotonic() + STUCK_ALONE_S)
    assert canary.values is not None
    assert float(canary.values[0][0]) == 3.0
    assert time.monotonic() - started < STUCK_ALONE_S


async def test_a_stuck_request_does_not_hold_the_requests_that_share_its_batch(
    registry: ModelRegistry,
) -> None:
    loaded = registry.get("slow")
    now = time.monotonic()
    stuck = asyncio.ensure_future(loaded.queue.submit(loaded.schema.from_record([STUCK]), now + 0.2))
    quick = [
        asyncio.ensure_future(loaded.queue.submit(loaded.schema.from_record([float(i)]), now + STUCK_ALONE_S))
        for i in range(3)
    ]
    with pytest.raises(DeadlineExceeded):
        await stuck
    answers = await asyncio.gather(*quick)
    # the batch is stopped at the stuck request's deadline and the others run again without it
    assert [float(a.values[0][0]) for a in answers if a.values is not None] == [0.0, 1.0, 2.0]
    assert time.monotonic() - now < STUCK_ALONE_S
