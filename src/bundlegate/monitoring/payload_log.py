"""The payload log: sampled requests as JSON lines, written by a process of its own (``PayloadLog``).

``put(entry)`` on the event loop keeps a small request (under ``ALONE_ROWS`` rows) with the others
waiting, and hands a large one on at once. Waiting requests go on together, joined into runs
(``payload_lines.runs``), once ``GATHER_ROWS`` rows wait or ``GATHER_S`` after the first. Runs go
to the writer process (``payload_writer``) over a ``SOCK_SEQPACKET`` socket pair as frames
(``payload_wire``: numeric arrays as they are). The writer encodes the lines and writes the file at
the CPU priority ``nice`` (19 by default: below serving). So encoding never holds the serving
process's interpreter lock, and on a CPU that serving keeps busy the writer yields. Requests are
dropped and counted (``dropped``), never waited for, once ``max_queue`` requests wait or are in
flight (sent, not yet written), when the socket's buffer is full (its size is capped by the
kernel's ``net.core.wmem_max``), and when the writer cannot write them (a full disk): it counts
those in the memory both processes map. The writer process starts with the log and ends with
``close()``, or when this process ends; if it dies, it is started again (at most every
``RESTART_AFTER_S``). Nothing here raises into a request: a failure is logged and the request
dropped. Linux only (``SOCK_SEQPACKET`` on a Unix socket pair).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from bundlegate.monitoring.payload_lines import ALONE_ROWS, PayloadEntry, PayloadRun, join, rows_of, runs
from bundlegate.monitoring.payload_wire import COUNTERS, FLUSH, frames
from bundlegate.monitoring.payload_writer import log_failure

log = logging.getLogger("bundlegate.payload")
BACKUPS = 5
SOCKET_BUFFER = 4 << 20  # asked for; the kernel caps it at net.core.wmem_max (and doubles it)
MAX_FRAME = 256 << 10  # or a quarter of the socket buffer the kernel gives, if that is less
GATHER_ROWS = 256  # small requests wait until this many rows do
GATHER_S = 0.05  # or this long after the first of them
RESTART_AFTER_S = 5.0  # a writer that died is restarted no sooner than this after the last start


@dataclass
class _Writer:
    """One writer process and what this process holds of it."""

    process: subprocess.Popen[bytes]
    sock: socket.socket
    counters: mmap.mmap
    max_frame: int
    started: float
    sent: int = 0  # requests sent to it (a request split into parts: once a part)
    lost_seen: int = 0  # of its lost requests, those already counted as dropped

    def done_and_lost(self) -> tuple[int, int]:
        done, lost = COUNTERS.unpack_from(self.counters, 0)
        return int(done), int(lost)


class PayloadLog:
    """See the module docstring. ``on_drop`` is told of dropped requests (the metrics counter)."""

    def __init__(
        self,
        target: str,
        *,
        max_bytes: int,
        max_queue: int,
        backups: int = BACKUPS,
        nice: int = 19,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.target = target
        self.max_bytes = max_bytes
        self.max_queue = max_queue
        self.backups = backups
        self.nice = nice
        self.dropped = 0
        self._on_drop = on_drop
        self._pending: list[PayloadEntry] = []
        self._pending_rows = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._checked = 0.0  # when a full queue last made us look at the writer
        self._logged: dict[str, float] = {}
        self._writer: _Writer = self._spawn()

    # ------------------------------------------------------------------ the request path

    def put(self, entry: PayloadEntry) -> None:
        """Take one request's entry (see the module docstring), or drop it."""
        try:
            self._put(entry)
        except Exception:  # logging must never fail a request
            log_failure(self._logged, "the payload log could not take a request")
            self._drop(1)

    def _put(self, entry: PayloadEntry) -> None:
        w = self._writer
        done, lost = w.done_and_lost()
        if lost > w.lost_seen:  # requests the writer could not write
            self._drop(lost - w.lost_seen)
            w.lost_seen = lost
        if self._closed or len(self._pending) + w.sent - done >= self.max_queue:
            self._drop(1)
            now = time.monotonic()
            if now - self._checked >= 1.0:  # a writer that died with a full queue never answers
                self._checked = now
                self._restart_if_gone()
            return
        n = rows_of(entry)
        if n >= ALONE_ROWS:
            self.send_pending()  # in order
            self._send(join([entry]))
            return
        self._pending.append(entry)
        self._pending_rows += n
        if self._pending_rows >= GATHER_ROWS:
            self.send_pending()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(GATHER_S, self.send_pending)
            except RuntimeError:  # no event loop in this thread: nothing would send them later
                self.send_pending()

    def send_pending(self) -> None:
        """Send the small requests waiting, as runs."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            pending, self._pending, self._pending_rows = self._pending, [], 0
            try:
                grouped = runs(pending)
            except Exception:  # arrays that do not join
                log_failure(self._logged, "the payload log could not join requests")
                self._drop(len(pending))
                return
            for run in grouped:
                self._send(run)

    def _send(self, run: PayloadRun) -> None:
        if self._closed:
            self._drop(len(run.heads))
            return
        try:
            parts, left_out = frames(run, self._writer.max_frame)
        except Exception:  # a value the frame cannot carry
            log_failure(self._logged, "a sampled request could not be framed for the payload log")
            self._drop(len({h.request_id for h in run.heads}))
            return
        w = self._writer
        for i, (frame, ids) in enumerate(parts):
            try:
                w.sock.sendmsg(frame)
            except OSError as exc:
                unsent = {request for _, later in parts[i:] for request in later}
                self._drop(len(unsent | left_out))
                if not isinstance(exc, BlockingIOError):  # the writer has gone, or the frame
                    log_failure(self._logged, f"sending to the payload log writer failed: {exc}")
                    self._restart_if_gone()
                return
            w.sent += len(ids)
        if left_out:
            self._drop(len(left_out))

    def _drop(self, requests: int) -> None:
        self.dropped += requests
        if self._on_drop is not None:
            self._on_drop(requests)

    # ------------------------------------------------------------------ off the request path

    def flush(self, timeout: float = 5.0) -> bool:
        """Send what waits, then wait until it is written (False on timeout or without a writer)."""
        self.send_pending()
        deadline = time.monotonic() + timeout
        sock = self._writer.sock
        try:
            with contextlib.suppress(BlockingIOError):
                while sock.recv(16):  # an answer to an earlier flush that timed out
                    pass
            while True:
                try:
                    sock.send(FLUSH)
                    break
                except BlockingIOError:
                    if not _wait(sock, select.POLLOUT, deadline):
                        return False
            while True:  # the writer answers FLUSH once everything before it is written
                if not _wait(sock, select.POLLIN, deadline):
                    return False
                try:
                    return sock.recv(16) == FLUSH
                except BlockingIOError:
                    continue
        except OSError:
            return False

    def close(self, timeout: float = 5.0) -> None:
        """Write what was sent, then end the writer process."""
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._stop(self._writer, timeout)

    # ------------------------------------------------------------------ the writer process

    def _spawn(self) -> _Writer:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        counter_fd = -1
        try:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            ours.setblocking(False)
            max_frame = min(MAX_FRAME, ours.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 4)
            counter_fd = _shared_file()
            os.ftruncate(counter_fd, COUNTERS.size)
            counters = mmap.mmap(counter_fd, COUNTERS.size)
            command = [
                sys.executable,
                "-m",
                "bundlegate.monitoring.payload_writer",
                *("--socket-fd", str(theirs.fileno()), "--counter-fd", str(counter_fd)),
                *("--target", self.target, "--max-bytes", str(self.max_bytes)),
                *("--backups", str(self.backups), "--max-frame", str(max_frame)),
                *("--nice", str(self.nice)),
            ]
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(), counter_fd)
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
            if counter_fd >= 0:
                os.close(counter_fd)
        return _Writer(process, ours, counters, max_frame, time.monotonic())

    def _restart_if_gone(self) -> None:
        """Start another writer if this one has exited (not sooner than ``RESTART_AFTER_S`` after
        the last start); what was in flight to the old one is counted as dropped."""
        w = self._writer
        if self._closed or w.process.poll() is None or time.monotonic() - w.started < RESTART_AFTER_S:
            return
        log.error("the payload log writer exited (code %s); starting another", w.process.returncode)
        try:
            new = self._spawn()
        except OSError:
            w.started = time.monotonic()  # try again later
            log_failure(self._logged, "starting the payload log writer failed")
            return
        done, lost = w.done_and_lost()
        self._drop(max(0, w.sent - done) + max(0, lost - w.lost_seen))
        self._writer = new
        self._stop(w, 0)

    def _stop(self, w: _Writer, timeout: float) -> None:
        with contextlib.suppress(OSError):
            w.sock.shutdown(socket.SHUT_RDWR)
        w.sock.close()
        try:
            w.process.wait(timeout)
        except subprocess.TimeoutExpired:
            if timeout:
                log.error("the payload log writer did not finish in %.0f s; stopping it", timeout)
            w.process.kill()
            w.process.wait()
        w.counters.close()


def _shared_file() -> int:
    """A file descriptor of an anonymous file both processes map (the writer's counters)."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("bundlegate-payload-counter")
    with tempfile.TemporaryFile() as f:
        return os.dup(f.fileno())


def _wait(sock: socket.socket, event: int, deadline: float) -> bool:
    """Whether ``sock`` became ready for ``event`` (``select.POLLIN`` / ``POLLOUT``) before
    ``deadline``."""
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    poller = select.poll()
    poller.register(sock, event)
    return bool(poller.poll(left * 1000))
