"""Adaptive batching per model version (DESIGN.md §5): ``BatchQueue``.

Concurrent ``await queue.submit(feed, deadline)`` calls are coalesced into one ``predict`` call of at
most ``max_batch_rows`` rows; each caller gets back exactly its own rows. No request waits for
company that is not coming:

0. A cheap request (estimated inference at most ``inline_max_s``) arriving at an idle queue runs on
   the event loop, never in a thread. ``session.run`` has a fixed cost per call far above the cost of
   one more small row, so when cheap requests arrive in bursts (the queue keeps a moving average of
   them per loop turn, ``_COMPANY``) a request waits for the end of the *next* loop iteration and
   runs in one call with the requests that iteration reads (a future each and one ``call_soon``
   callback; no task, no timer). Below that average, as at concurrency 1, it runs at once, right in
   ``submit``. With ``max_batch_rows=1`` (batching off) cheap requests always run at once.
1. Otherwise a request arriving at an idle queue starts a worker task, which yields one event-loop
   tick (requests whose handlers are ready in the same tick join the batch), then runs.
2. Requests arriving while a batch runs accumulate and go together in the next batch.
3. Within a busy period only, the worker may wait for the next batch to fill: until
   ``max_batch_rows`` rows are queued, the oldest request has waited ``max_delay_s``, or as long as
   one ``predict`` call has recently taken, whichever comes first (waiting longer than a call costs
   cannot pay for itself).
4. A request larger than ``max_batch_rows`` runs alone. The worker ends when the queue is empty.

Limits: a full queue (``max_queue_rows`` rows waiting) or a draining queue raises ``Overloaded`` at
once; a request whose ``deadline`` (a ``time.monotonic()`` value) passes while it waits raises
``DeadlineExceeded`` and is dropped before its batch runs; a batch in the thread pool is stopped at its
first deadline (``OnnxModel.stoppable``) and its other requests run again without the late one.

Where ``predict`` runs: a batch whose estimated inference time (learnt from recent calls, seeded by
the warm-up, ``estimate_s``) is at most ``inline_max_s`` runs inline on the event loop, where a
thread hop would cost more than the call; longer ones go to the thread pool (``run_blocking``),
where onnxruntime releases the GIL and the loop keeps serving. A process that may run on one CPU
only (its affinity; ``run_in_threads=False``, set by the registry from ``usable_cpus``) runs every
batch on the loop: there a thread could only take turns with the loop, not run beside it. The
measurements behind these choices are in bench/HISTORY.md.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from bundlegate.errors import DeadlineExceeded, Overloaded
from bundlegate.feed import Feed, Prediction

T = TypeVar("T")

DEFAULT_INLINE_MAX_S = 0.0005
_EWMA = 0.2  # weight of the newest call in the learnt cost
_COMPANY = 1.5  # cheap requests per turn from which they wait for the next iteration's end (step 0)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS has one, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class Predictor(Protocol):
    """What the queue runs: ``OnnxModel``/``SklearnModel`` from ``bundlegate.runtime``."""

    def predict(self, feed: Feed) -> Prediction: ...


class BatchObserver(Protocol):
    """Told about every batch run: its rows, the longest queue wait in it, the inference time."""

    def on_batch(self, rows: int, queue_wait_s: float, inference_s: float) -> None: ...


class _NoObserver:
    def on_batch(self, rows: int, queue_wait_s: float, inference_s: float) -> None:
        return None


async def run_blocking(executor: Executor | None, fn: Callable[..., T], *args: object) -> T:
    """The one way blocking work leaves the event loop: ``fn(*args)`` in ``executor``'s threads."""
    return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)


def _timed(predict: Callable[[Feed], Prediction], feed: Feed) -> tuple[Prediction, float]:
    started = time.monotonic()
    return predict(feed), time.monotonic() - started


@dataclass(slots=True, eq=False)
class _Request:
    feed: Feed
    deadline: float | None
    future: asyncio.Future[Prediction]
    enqueued: float = field(default_factory=time.monotonic)


class BatchQueue:
    """The batching queue of one model version; see the module docstring for the algorithm."""

    def __init__(
        self,
        model: Predictor,
        max_batch_rows: int = 256,
        max_delay_s: float = 0.001,
        max_queue_rows: int = 20_000,
        observer: BatchObserver | None = None,
        *,
        inline_max_s: float = DEFAULT_INLINE_MAX_S,
        executor: Executor | None = None,
        run_in_threads: bool = True,
    ) -> None:
        self.model = model
        self.max_batch_rows = max(1, max_batch_rows)
        self.max_delay_s = max(0.0, max_delay_s)
        self.max_queue_rows = max_queue_rows
        self.observer: BatchObserver = observer or _NoObserver()
        self.inline_max_s = inline_max_s
        self.executor = executor
        self.run_in_threads = run_in_threads
        self._pending: deque[_Request] = deque()
        self._tick: list[_Request] = []  # cheap requests of this loop iteration and the next (step 0)
        self._tick_waited = False  # the tick has been queued again once (step 0)
        self._queued_rows = 0
        self._worker: asyncio.Task[None] | None = None
        self._arrived: asyncio.Event | None = None  # set when a request joins a waiting worker
        self._closed = False
        self._call_s = 0.0  # moving average of a predict call's duration (0: nothing learnt yet)
        self._call_rows = 1.0  # moving average of its rows
        self._arrivals = 0  # cheap requests run alone in this loop iteration
        self._company = 1.0  # moving average of cheap requests per turn (step 0)

    @property
    def queued_rows(self) -> int:
        """Rows waiting (not counting the batch being run)."""
        return self._queued_rows

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing running."""
        return self._worker is None and not self._tick

    @property
    def draining(self) -> bool:
        return self._closed

    async def submit(self, feed: Feed, deadline: float | None = None) -> Prediction:
        """Predict ``feed``'s rows in the next batch; returns only this caller's rows.

        Raises ``Overloaded`` (queue full or draining), ``DeadlineExceeded`` (``deadline``, a
        ``time.monotonic()`` value, passed before the answer), or what the model raised.
        """
        if self._closed:
            raise Overloaded("the model is draining; retry on another instance")
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise DeadlineExceeded("the request deadline passed before inference")
        if self._pending and self._queued_rows + feed.n_rows > self.max_queue_rows:
            raise Overloaded("the model's queue is full")
        loop = asyncio.get_running_loop()
        if self._worker is None and self.estimate_s(feed.n_rows) <= self.inline_max_s:
            if self.max_batch_rows > 1 and self._company >= _COMPANY:
                # cheap, with company: run at the end of this loop iteration with the others (step 0)
                if not self._tick:
                    loop.call_soon(self._run_tick)
                request = _Request(feed, deadline, loop.create_future(), now)
                self._tick.append(request)
                return await request.future
            # cheap and alone (or batching off): run right here, counting who else arrives meanwhile
            self._arrivals += 1
            if self._arrivals == 1:
                loop.call_soon(self._end_of_iteration)
            prediction = self.model.predict(feed)
            inference_s = time.monotonic() - now
            self.record_inference(feed.n_rows, inference_s)
            self.observer.on_batch(feed.n_rows, 0.0, inference_s)
            return prediction
        request = _Request(feed, deadline, loop.create_future(), now)
        self._pending.append(request)
        self._queued_rows += feed.n_rows
        if self._worker is None:
            self._worker = loop.create_task(self._work())
        elif self._arrived is not None:
            self._arrived.set()
        if deadline is None:
            return await request.future
        try:
            async with asyncio.timeout(deadline - now):
                return await request.future
        except TimeoutError:
            raise DeadlineExceeded("the request deadline passed before its answer") from None

    def record_inference(self, rows: int, seconds: float) -> None:
        """Learn how long ``predict`` takes (every batch does; the registry seeds it with the warm-up)."""
        if self._call_s == 0.0:
            self._call_s, self._call_rows = seconds, float(max(rows, 1))
        else:
            self._call_s += _EWMA * (seconds - self._call_s)
            self._call_rows += _EWMA * (max(rows, 1) - self._call_rows)

    def estimate_s(self, rows: int) -> float:
        """The learnt duration of a ``rows``-row call: the recent call time, scaled up linearly for
        calls with more rows than recent ones (conservative: per-row cost usually falls with size).

        It learns from what runs, so it corrects itself: an outlier that sends cheap calls to the
        pool is averaged away by the next few calls, which are timed where they run.
        """
        return self._call_s * max(1.0, rows / self._call_rows)

    async def drain(self, timeout: float | None = None) -> bool:
        """Stop accepting (``Overloaded``) and wait for queued and running work to finish.

        Returns False if ``timeout`` seconds passed first; the requests still queued then fail with
        ``Overloaded``.
        """
        self._closed = True
        worker = self._worker
        if worker is None:
            return True
        done, _ = await asyncio.wait({worker}, timeout=timeout)
        if done:
            return True
        self._fail_pending(Overloaded("the model was unloaded before this request ran"))
        return False

    # ------------------------------------------------------------------ the worker

    async def _work(self) -> None:
        try:
            await asyncio.sleep(0)  # one tick: requests ready now join the first batch
            busy = False
            while self._pending:
                if busy:
                    await self._wait_for_company()
                batch = self._take_batch()
                if batch:
                    await self._run(batch)
                    busy = True
        finally:
            self._worker = None
            if self._pending:  # cancelled (loop shutting down): nobody will run these
                self._fail_pending(Overloaded("the model's queue stopped"))

    async def _wait_for_company(self) -> None:
        if self._queued_rows >= self.max_batch_rows or self.max_delay_s == 0.0:
            return
        oldest = self._pending[0].enqueued
        until = min(oldest + self.max_delay_s, time.monotonic() + self.estimate_s(self.max_batch_rows))
        loop = asyncio.get_running_loop()
        self._arrived = arrived = asyncio.Event()
        try:
            while self._queued_rows < self.max_batch_rows:
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return
                arrived.clear()
                handle = loop.call_later(remaining, arrived.set)
                try:
                    await arrived.wait()
                finally:
                    handle.cancel()
        finally:
            self._arrived = None

    def _take_batch(self) -> list[_Request]:
        """Pop requests up to ``max_batch_rows`` rows (at least one), dropping expired and cancelled ones."""
        batch: list[_Request] = []
        rows = 0
        now = time.monotonic()
        pending = self._pending
        while pending:
            request = pending[0]
            n = request.feed.n_rows
            if batch and rows + n > self.max_batch_rows:
                break
            pending.popleft()
            self._queued_rows -= n
            if request.future.done():  # the caller gave up (deadline or disconnect)
                continue
            if request.deadline is not None and now >= request.deadline:
                request.future.set_exception(DeadlineExceeded("the request deadline passed in the queue"))
                continue
            batch.append(request)
            rows += n
        return batch

    async def _run(self, batch: list[_Request]) -> None:
        feed = Feed.concat([r.feed for r in batch])
        started = time.monotonic()
        try:
            if not self.run_in_threads or self.estimate_s(feed.n_rows) <= self.inline_max_s:
                prediction, inference_s = self._timed_predict(feed)
            else:
                prediction, inference_s = await self._run_in_thread(feed, batch)
        except DeadlineExceeded as exc:  # stopped at the batch's first deadline: the others run again
            now = time.monotonic()
            rest = [r for r in batch if r.deadline is None or r.deadline > now]
            for request in batch:
                if not request.future.done() and request not in rest:
                    request.future.set_exception(exc)
            if rest and len(rest) < len(batch):
                await self._run(rest)
            return
        except BaseException as exc:
            if isinstance(exc, Exception) and len(batch) > 1:
                # one request's rows may be what the model refused: each alone, so only it fails
                for request in batch:
                    await self._run([request])
                return
            error = exc if isinstance(exc, Exception) else Overloaded("the model's queue stopped")
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        self.record_inference(feed.n_rows, inference_s)
        self._answer(batch, prediction, started - batch[0].enqueued, inference_s)

    async def _run_in_thread(self, feed: Feed, batch: list[_Request]) -> tuple[Prediction, float]:
        """``predict`` in the thread pool, stopped at the batch's first deadline if the model can."""
        stoppable = getattr(self.model, "stoppable", None)
        deadlines = [r.deadline for r in batch if r.deadline is not None]
        if stoppable is None or not deadlines:
            return await run_blocking(self.executor, self._timed_predict, feed)
        run = stoppable()
        timer = asyncio.get_running_loop().call_later(min(deadlines) - time.monotonic(), run.stop)
        try:
            return await run_blocking(self.executor, _timed, run.predict, feed)
        finally:
            timer.cancel()

    def _end_of_iteration(self) -> None:
        """How many cheap requests ran alone in the loop iteration that just ended (step 0)."""
        self._company += _EWMA * (self._arrivals - self._company)
        self._arrivals = 0

    def _run_tick(self) -> None:
        """Step 0: the cheap requests of two loop iterations, in calls of at most ``max_batch_rows``."""
        if not self._tick_waited:  # once: those the next poll reads join (see step 0)
            self._tick_waited = True
            asyncio.get_running_loop().call_soon(self._run_tick)
            return
        self._tick_waited = False
        requests, self._tick = self._tick, []
        self._company += _EWMA * (len(requests) - self._company)
        batches: list[list[_Request]] = []
        rows = self.max_batch_rows
        for request in requests:
            if request.future.done():  # the caller has gone (disconnect)
                continue
            n = request.feed.n_rows
            if rows + n > self.max_batch_rows:
                batches.append([])
                rows = 0
            batches[-1].append(request)
            rows += n
        while batches:
            batch = batches.pop(0)
            started = time.monotonic()
            try:
                prediction, inference_s = self._timed_predict(Feed.concat([r.feed for r in batch]))
            except Exception as exc:
                if len(batch) > 1:  # one request's rows may be what the model refused: each alone
                    batches[:0] = [[r] for r in batch]
                elif not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                continue
            self.record_inference(sum(r.feed.n_rows for r in batch), inference_s)
            self._answer(batch, prediction, started - batch[0].enqueued, inference_s)

    def _answer(
        self, batch: list[_Request], prediction: Prediction, queue_wait_s: float, inference_s: float
    ) -> None:
        """Each caller gets its own rows of ``prediction``; the batch is reported to the observer
        (``queue_wait_s``: how long its oldest request waited before the batch started)."""
        offset = 0
        for request in batch:
            n = request.feed.n_rows
            if not request.future.done():
                mine = prediction.rows(offset, offset + n) if len(batch) > 1 else prediction
                request.future.set_result(mine)
            offset += n
        self.observer.on_batch(offset, queue_wait_s, inference_s)

    def _timed_predict(self, feed: Feed) -> tuple[Prediction, float]:
        """``predict`` and its duration, measured where it runs (a thread hop is not inference)."""
        started = time.monotonic()
        prediction = self.model.predict(feed)
        return prediction, time.monotonic() - started

    def _fail_pending(self, exc: Exception) -> None:
        while self._pending:
            request = self._pending.popleft()
            self._queued_rows -= request.feed.n_rows
            if not request.future.done():
                request.future.set_exception(exc)
