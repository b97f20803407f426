"""The payload log's writer process: ``python -m bundlegate.monitoring.payload_writer`` (started by
``payload_log.PayloadLog``, never by hand).

It lowers its own CPU priority (``--nice``), then reads the frames waiting on the socket it was given
(``payload_wire``: each a run of requests), turns them into JSON lines (``payload_lines``) and
appends those to the log file (``RotatingFile``) or stdout. In the memory it shares with the serving
process it counts the requests done and, of those, the ones lost (a frame it cannot read, lines it
cannot write, as on a full disk): the serving process bounds the requests in flight by the first
and counts the second as dropped. Failures are logged at most once a minute each. A ``b"F"``
message is answered with ``b"F"`` once everything before it is written (``PayloadLog.flush``); the
end of the socket (the server closed it, or exited) ends the process, after the last lines.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import mmap
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import IO

from bundlegate.monitoring.payload_lines import PayloadRun, lines_of
from bundlegate.monitoring.payload_wire import COUNTERS, FLUSH, read_frame, requests_in

log = logging.getLogger("bundlegate.payload")
MAX_FRAMES = 256  # frames read before their lines are written
BUFFER_FRAMES = 8  # the receive buffer holds this many frames of the largest size
LOG_EVERY_S = 60.0  # a failure of the same kind is logged at most this often


class RotatingFile:
    """Whole lines appended to ``target`` (``-``: stdout); when a line would take the file past
    ``max_bytes`` it becomes ``target.1`` (older ones ``.2`` ... ``.<backups>``, the oldest deleted)
    and a new file starts (a file is larger only when one line is)."""

    def __init__(self, target: str, max_bytes: int, backups: int) -> None:
        self.target = target
        self.max_bytes = max_bytes
        self.backups = backups
        self._file: IO[bytes] | None = None
        self._size = 0

    def write(self, data: bytes) -> None:
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

    def flush(self) -> None:
        if self.target == "-":
            sys.stdout.buffer.flush()
        elif self._file is not None:
            self._file.flush()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()

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


def serve(sock: socket.socket, out: RotatingFile, counters: mmap.mmap | None, max_frame: int) -> None:
    """Write what arrives on ``sock`` until it ends (see the module docstring). Frames are read into
    one buffer, each after the last, so a run's arrays are views of it until its lines are written."""
    buffer = bytearray(max(BUFFER_FRAMES * max_frame, 8 << 20))
    view = memoryview(buffer)
    done = lost = 0
    logged: dict[str, float] = {}
    while True:
        received: list[PayloadRun] = []
        offset, flush, ended = 0, False, False
        sock.setblocking(True)
        while len(received) < MAX_FRAMES and len(buffer) - offset >= max_frame:
            try:
                n = sock.recv_into(view[offset:])
            except BlockingIOError:  # nothing more waits: write what was read
                break
            sock.setblocking(False)
            message = view[offset : offset + n]
            if n == 0:
                ended = True
                break
            if message == FLUSH:
                flush = True
                break
            try:
                received.append(read_frame(message))
            except (ValueError, KeyError, TypeError):
                log_failure(logged, "a payload log frame could not be read")
                requests = requests_in(message)
                done, lost = done + requests, lost + requests
            offset += n
        for run in received:
            try:
                out.write(lines_of(run))
            except Exception:  # a broken run or a full disk must not stop the writer
                log_failure(logged, "writing the payload log failed")
                lost += len(run.heads)
            done += len(run.heads)
        try:
            out.flush()
        except Exception:
            log_failure(logged, "writing the payload log failed")
        del received
        if counters is not None:
            COUNTERS.pack_into(counters, 0, done, lost)
        if flush:
            sock.setblocking(True)
            with contextlib.suppress(OSError):
                sock.sendall(FLUSH)
        if ended:
            return


def log_failure(logged: dict[str, float], message: str) -> None:
    """Log the traceback of the failure being handled, once per ``LOG_EVERY_S`` for each message
    (``logged``: message -> when it was last logged)."""
    now = time.monotonic()
    if now - logged.get(message, -LOG_EVERY_S) >= LOG_EVERY_S:
        logged[message] = now
        log.exception(message)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bundlegate.monitoring.payload_writer")
    parser.add_argument("--socket-fd", type=int, required=True)
    parser.add_argument("--counter-fd", type=int)
    parser.add_argument("--target", required=True)
    parser.add_argument("--max-bytes", type=int, required=True)
    parser.add_argument("--backups", type=int, default=5)
    parser.add_argument("--max-frame", type=int, required=True)
    parser.add_argument("--nice", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # a stop signal for the whole process group (Ctrl-C, some init systems) stops the server, which
    # then ends this process by closing the socket: until then lines may still arrive
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.nice:
        os.nice(args.nice)
    sock = socket.socket(fileno=args.socket_fd)
    counters = mmap.mmap(args.counter_fd, COUNTERS.size) if args.counter_fd is not None else None
    out = RotatingFile(args.target, args.max_bytes, args.backups)
    try:
        serve(sock, out, counters, args.max_frame)
    finally:
        out.close()


if __name__ == "__main__":
    main()
