"""Shadow scoring: a sampled copy of a request scored on another version, off the response path.

    scorer = ShadowScorer(report)                    # report(model, version, agreed, rows, seconds)
    scorer.offer(target, sample, decode, prediction) # after the answer is computed; never raises
    ShadowRoute(scorer, target, sample).offer(decode, prediction)   # the same, as the registry routes it

``offer`` draws the sample, then schedules a task that decodes the request for the shadow version's
schema, predicts through the shadow's batching queue and compares: the same label for a classifier,
the same value within ``rtol=1e-4, atol=1e-6`` otherwise. The answer the client gets is never delayed
nor changed: the task runs after the handler returned, and a shadow that fails, is busy (more than
``max_in_flight`` tasks) or cannot read the request only costs that one comparison.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from bundlegate.feed import Feed, Prediction

log = logging.getLogger("bundlegate.shadow")

SHADOW_TIMEOUT_S = 10.0


class ShadowTarget(Protocol):
    """What a shadow version offers (``registry.LoadedVersion`` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def schema(self) -> Any: ...
    @property
    def queue(self) -> Any: ...


ShadowReport = Callable[[str, int, int, int, float], None]


@dataclass(frozen=True, slots=True)
class ShadowRoute:
    """The shadow of one request: offer it to ``target`` through ``scorer`` with probability ``sample``."""

    scorer: ShadowScorer
    target: ShadowTarget
    sample: float

    def offer(self, decode: Callable[[Any], Feed], primary: Prediction) -> None:
        self.scorer.offer(self.target, self.sample, decode, primary)


class ShadowScorer:
    """See the module docstring."""

    def __init__(self, report: ShadowReport | None = None, *, max_in_flight: int = 64) -> None:
        self.report = report
        self.max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()

    def offer(
        self,
        target: ShadowTarget,
        sample: float,
        decode: Callable[[Any], Feed],
        primary: Prediction,
    ) -> None:
        """Score this request on ``target`` with probability ``sample`` (see the module docstring)."""
        if sample <= 0 or (sample < 1 and random.random() >= sample):
            return
        if len(self._tasks) >= self.max_in_flight:
            return
        task = asyncio.get_running_loop().create_task(self._score(target, decode, primary))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, timeout: float | None = None) -> None:
        """Wait for the comparisons under way (shutdown, tests)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def _score(self, target: ShadowTarget, decode: Callable[[Any], Feed], primary: Prediction) -> None:
        started = time.monotonic()
        try:
            feed = decode(target.schema)
            shadow = await target.queue.submit(feed, started + SHADOW_TIMEOUT_S)
        except Exception as exc:  # a shadow problem never reaches the client
            log.debug("shadow %s version %s: %s", target.name, target.version, exc)
            return
        seconds = time.monotonic() - started
        agreed, rows = agreement(primary, shadow)
        if self.report is not None and rows:
            self.report(target.name, target.version, agreed, rows, seconds)


def agreement(primary: Prediction, shadow: Prediction) -> tuple[int, int]:
    """(rows that agree, rows compared): labels when both have them, else values within tolerance."""
    if primary.labels is not None and shadow.labels is not None:
        a, b = np.asarray(primary.labels), np.asarray(shadow.labels)
        if a.shape != b.shape:
            return 0, int(a.shape[0])
        return int(np.count_nonzero(a == b)), int(a.shape[0])
    if primary.values is not None and shadow.values is not None:
        a, b = np.asarray(primary.values, dtype=np.float64), np.asarray(shadow.values, dtype=np.float64)
        if a.shape != b.shape:
            return 0, int(a.shape[0])
        close = np.isclose(a, b, rtol=1e-4, atol=1e-6).reshape(a.shape[0], -1).all(axis=1)
        return int(np.count_nonzero(close)), int(a.shape[0])
    return 0, 0
