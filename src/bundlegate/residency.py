"""Which loaded versions stay in memory: ``Residency``, a byte budget with least-recently-used eviction,
and one load at a time per version for ``--lazy``.

    residency = Residency(budget_bytes=512 * 2**20)      # 0: no budget
    residency.add(key, size); residency.used(key)        # loaded; answered a batch
    for key in residency.victims(need, pinned): ...      # evict these to make room for ``need`` bytes
    await residency.load_once(key, start)                # concurrent callers share one load

A version's size is the bytes of its bundle files: the ONNX session holds the model's weights, which
dominate a bundle, and the size is known before the load, so room is made first. Use is recorded per
batch by the queue's observer (``UsageObserver``), never per request on the hot path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bundlegate.batching import BatchObserver

Key = tuple[str, int]


class UsageObserver:
    """A batch observer that also records the version's last use for the budget."""

    __slots__ = ("inner", "key", "last_used")

    def __init__(self, key: Key, inner: BatchObserver | None, last_used: dict[Key, float]) -> None:
        self.key = key
        self.inner = inner
        self.last_used = last_used

    def on_batch(self, rows: int, queue_wait_s: float, inference_s: float) -> None:
        self.last_used[self.key] = time.monotonic()
        if self.inner is not None:
            self.inner.on_batch(rows, queue_wait_s, inference_s)


class Residency:
    """See the module docstring."""

    def __init__(self, budget_bytes: int = 0) -> None:
        self.budget_bytes = budget_bytes
        self._sizes: dict[Key, int] = {}
        self._last_used: dict[Key, float] = {}
        self._loads: dict[Key, asyncio.Task[Any]] = {}

    @property
    def resident_bytes(self) -> int:
        return sum(self._sizes.values())

    def observer(self, key: Key, inner: BatchObserver | None) -> BatchObserver | None:
        """``inner`` wrapped to record use when there is a budget (else ``inner`` itself)."""
        if not self.budget_bytes:
            return inner
        return UsageObserver(key, inner, self._last_used)

    def add(self, key: Key, size: int) -> None:
        self._sizes[key] = size
        self._last_used[key] = time.monotonic()

    def used(self, key: Key) -> None:
        self._last_used[key] = time.monotonic()

    def remove(self, key: Key) -> None:
        self._sizes.pop(key, None)
        self._last_used.pop(key, None)

    def victims(self, need: int, pinned: Callable[[Key], bool]) -> list[Key]:
        """Least recently used unpinned versions to evict so that ``need`` more bytes fit the budget
        (as many as there are, when even all of them would not make room)."""
        if not self.budget_bytes:
            return []
        excess = self.resident_bytes + need - self.budget_bytes
        chosen: list[Key] = []
        for key in sorted(self._sizes, key=lambda k: self._last_used.get(k, 0.0)):
            if excess <= 0:
                break
            if not pinned(key):
                chosen.append(key)
                excess -= self._sizes[key]
        return chosen

    def loading(self, key: Key) -> bool:
        """Whether a load of ``key`` is under way."""
        return key in self._loads

    async def load_once(self, key: Key, start: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``start()`` for ``key`` unless a load of it is under way; every caller awaits that one."""
        task = self._loads.get(key)
        if task is None:
            task = asyncio.ensure_future(start())
            self._loads[key] = task
            task.add_done_callback(lambda _: self._loads.pop(key, None))
        return await asyncio.shield(task)
