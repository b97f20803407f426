"""The payload log: sampled requests as JSON lines, written off the request path (``PayloadLog``).

``put(entry)`` on the event loop appends to a bounded queue and returns; a writer thread, every
``WRITE_EVERY_S`` or once ``WAKE_ROWS`` rows wait, turns entries into lines
(``payload_lines``) and writes them to the file, or to stdout for ``-``. When the
queue is full the entry is dropped and counted (``dropped``): a slow disk costs log lines, never a
slower answer. Size-based rotation: when a line would take the file past ``max_bytes``, it becomes
``PATH.1`` (the older ones ``PATH.2`` ... ``PATH.<backups>``, the oldest deleted) and a new file
starts (a file is larger only when one line is).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO

from bundlegate.monitoring.payload_lines import PayloadEntry, lines_of, rows_of, shape_of

log = logging.getLogger("bundlegate.payload")
BACKUPS = 5
WRITE_EVERY_S = 0.1  # the writer wakes this often, or once WAKE_ROWS rows or a quarter of the queue
WAKE_ROWS = 256  # wait: single rows go in runs, a large request while its arrays are still in cache


class PayloadLog:
    """See the module docstring. ``on_drop`` is told each dropped entry (the metrics counter)."""

    def __init__(
        self,
        target: str,
        *,
        max_bytes: int,
        max_queue: int,
        backups: int = BACKUPS,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.target = target
        self.max_bytes = max_bytes
        self.max_queue = max_queue
        self.backups = backups
        self.dropped = 0
        self._on_drop = on_drop
        self._queue: deque[PayloadEntry] = deque()
        self._wake = threading.Event()
        self._stop = False
        self._file: IO[bytes] | None = None
        self._size = 0
        self._wake_at = max(1, max_queue // 4)
        self._rows = 0  # queued since the writer was last woken
        self._thread = threading.Thread(target=self._run, name="bundlegate-payload-log", daemon=True)
        self._idle = threading.Event()
        self._idle.set()
        self._thread.start()

    def put(self, entry: PayloadEntry, rows: int = 1) -> None:
        """Queue one request's entry (``rows`` rows), or drop it when ``max_queue`` entries wait
        already."""
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
            return
        self._idle.clear()
        self._queue.append(entry)
        self._rows += rows
        if self._rows >= WAKE_ROWS or len(self._queue) >= self._wake_at:  # else every WRITE_EVERY_S
            self._rows = 0
            self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued entry is written (False on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            self._wake.set()
            if self._idle.wait(max(0.0, deadline - time.monotonic())) and not self._queue:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer and close the file."""
        self.flush(timeout)
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        queue = self._queue
        while True:
            self._wake.wait(WRITE_EVERY_S)
            self._wake.clear()
            while queue:
                batch: list[PayloadEntry] = []
                while queue and len(batch) < 256:
                    batch.append(queue.popleft())
                try:
                    for group in _runs(batch):
                        self._write(lines_of(group))
                    self._flush()
                except Exception:  # a broken entry or a full disk must not stop the writer
                    log.exception("writing the payload log failed")
            if not queue:
                self._idle.set()
                if self._stop:
                    break
        if self._file is not None and self.target != "-":
            with contextlib.suppress(OSError):
                self._file.close()

    def _write(self, data: bytes) -> None:
        """Whole lines; the file rotates before a line that would take it past ``max_bytes``."""
        if self.target == "-":
            sys.stdout.buffer.write(data)
            return
        if self._file is None:
            self._open()
        while data:
            assert self._file is not None
            room = self.max_bytes - self._size
            cut = len(data) if len(data) <= room else data.rfind(b"\n", 0, room) + 1
            if cut == 0 and self._size == 0:  # one line longer than max_bytes: it goes alone
                cut = data.find(b"\n") + 1 or len(data)
            if cut:
                self._file.write(data[:cut])
                self._size += cut
                data = data[cut:]
            if data:
                self._rotate()

    def _flush(self) -> None:
        if self.target == "-":
            sys.stdout.buffer.flush()
        elif self._file is not None:
            self._file.flush()

    def _open(self) -> None:
        path = Path(self.target)
        self._file = path.open("ab")
        self._size = path.stat().st_size

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        base = self.target
        for i in range(self.backups - 1, 0, -1):
            if os.path.exists(f"{base}.{i}"):
                os.replace(f"{base}.{i}", f"{base}.{i + 1}")
        if self.backups > 0:
            os.replace(base, f"{base}.1")
        else:
            os.remove(base)
        self._open()


def _runs(entries: list[PayloadEntry], max_rows: int = 1024) -> list[list[PayloadEntry]]:
    """``entries`` in order, as runs of one shape of at most ``max_rows`` rows (written together; a
    large entry goes alone, its arrays need no joining)."""
    runs: list[list[PayloadEntry]] = []
    shape: object = None
    rows = max_rows
    for entry in entries:
        n = rows_of(entry)
        this = shape_of(entry)
        if this == shape and rows + n <= max_rows and n < 64:
            runs[-1].append(entry)
            rows += n
        else:
            runs.append([entry])
            shape, rows = this, (n if n < 64 else max_rows)
    return runs
