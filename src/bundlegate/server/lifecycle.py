"""``GatewayServer``: uvicorn's server with the gateway's signals.

- SIGTERM/SIGINT with ``--drain-delay-s``: the app turns unready at once (``/readyz`` 503) and the
  listener keeps accepting for the delay, so a load balancer that polls readiness stops sending
  before connections are refused; then uvicorn's own shutdown runs: the listener closes, requests
  in flight finish, the app drains its queues (``--drain-timeout-s``). A second signal stops at once.
- SIGHUP: the repository and the keys file are read again (``Gateway.rescan``) in this process; the
  ``--workers N`` supervisor handles SIGHUP itself by replacing its workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Generator
from types import FrameType
from typing import Any

import uvicorn

logger = logging.getLogger("bundlegate")


class GatewayServer(uvicorn.Server):
    """See the module docstring; ``config.app`` is the gateway (``http.app.Gateway``)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.gateway: Any = config.app
        self._exit_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def drain_delay_s(self) -> float:
        return float(getattr(getattr(self.gateway, "settings", None), "drain_delay_s", 0.0))

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._exit_at is None and not self.should_exit and self.drain_delay_s > 0:
            self._captured_signals.append(sig)
            self._exit_at = time.monotonic() + self.drain_delay_s
            self.gateway.stop_requested()
            logger.info("stopping: unready now, closing the listener in %.1f s", self.drain_delay_s)
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._exit_at is not None and not self.should_exit and time.monotonic() >= self._exit_at:
            self.should_exit = True
        return await super().on_tick(counter)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            if threading.current_thread() is not threading.main_thread() or not hasattr(
                self.gateway, "rescan"
            ):
                yield
                return
            loop = asyncio.get_running_loop()
            previous = signal.signal(signal.SIGHUP, lambda *_: loop.call_soon_threadsafe(self._rescan))
            try:
                yield
            finally:
                signal.signal(signal.SIGHUP, previous)

    def _rescan(self) -> None:
        logger.info("SIGHUP: re-scanning the repository and the keys file")
        task = asyncio.get_running_loop().create_task(self.gateway.rescan())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
