"""``bundle serve --workers N``: N uvicorn worker processes, each accepting on its own socket.

uvicorn's own supervisor binds one listening socket and hands it to every worker. A worker's event
loop accepts every connection pending when it wakes, so a burst of new keep-alive connections (a
client's pool, wrk's 16) can all land on one worker and leave the other idle for the life of the
pool. Here every worker binds its own socket
to the address with ``SO_REUSEPORT`` and the kernel spreads new connections across the listening
sockets by their addresses, so a pool of 16 splits about evenly whatever the workers are doing when it
connects.

The parent holds the address (bound, not listening: it takes no connections) so a port in use is one
error before any worker starts, and supervises: a worker that dies is started again, one that fails
during startup (exit 3, like uvicorn's) stops the whole server, and SIGTERM/SIGINT are passed to the
workers, which drain (``--drain-timeout-s``) and exit; the parent then exits 0. A worker listens only
once its startup is done, and a worker's startup waits for every bundle to load or fail
(``create_app(listen_after_load=True)``), so a starting or restarting worker gets no connections
before it can answer them. SIGHUP replaces the workers one at a time, as uvicorn's supervisor does,
and each old worker is stopped only once its replacement listens, so the address always has a listener (a
connection that reaches an old worker's queue in the instant it closes is still reset: Linux hands it
to another socket only with ``net.ipv4.tcp_migrate_req``). Each worker gets the settings as they
are (pickled with the process arguments) and builds its app from them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from typing import TYPE_CHECKING, Any, NamedTuple

from bundlegate.server.config import STARTUP_FAILURE, uvicorn_config

if TYPE_CHECKING:
    from bundlegate.settings import Settings

logger = logging.getLogger("bundlegate.workers")

SUPERVISE_INTERVAL_S = 0.5
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STOP_MARGIN_S = 10.0  # beyond the drain timeout, before a worker that has not exited is killed
READY_TIMEOUT_S = 300.0  # longest wait for a replacement worker to listen (it loads every bundle)


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (not listening)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def worker_main(settings: Settings, ready: Event) -> None:
    """One worker (in a spawned process): the gateway under uvicorn on its own socket, listening once
    its bundles are loaded; ``ready`` is set then."""
    from bundlegate.server.lifecycle import GatewayServer

    server = None
    try:
        server = GatewayServer(uvicorn_config(settings, worker=True))
        threading.Thread(target=_report_ready, args=(server, ready), daemon=True).start()
        server.run(sockets=[bound_socket(settings.host, settings.port)])
    except Exception:  # uvicorn itself exits 3 for an app that does not import or start
        if server is not None and server.started:
            raise
        logger.exception("worker [%s] failed to start", os.getpid())
    if server is None or not server.started:
        sys.exit(STARTUP_FAILURE)


def _report_ready(server: Any, ready: Event) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    if server.started:
        ready.set()


class Worker(NamedTuple):
    process: SpawnProcess
    ready: Event


class Workers:
    """Starts, restarts and stops ``settings.workers`` worker processes."""

    def __init__(self, settings: Settings) -> None:
        self.count = settings.workers
        self.stop_timeout_s = settings.drain_delay_s + settings.drain_timeout_s + STOP_MARGIN_S
        self.reservation = bound_socket(settings.host, settings.port)  # an address in use fails here, once
        self.port: int = self.reservation.getsockname()[1]  # port 0: the one the kernel chose
        self.settings = settings.replace(port=self.port)
        self.workers: list[Worker] = []
        self.stopping = threading.Event()
        self.restart_requested = threading.Event()
        self.exit_code = 0

    @property
    def processes(self) -> list[SpawnProcess]:
        return [w.process for w in self.workers]

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT or a startup failure; the exit code for the command."""
        previous = {sig: signal.signal(sig, lambda *_: self.stopping.set()) for sig in STOP_SIGNALS}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: self.restart_requested.set())
        try:
            self.workers = [self._start() for _ in range(self.count)]
            while not self.stopping.wait(SUPERVISE_INTERVAL_S):
                if self.restart_requested.is_set():
                    self.restart_requested.clear()
                    self._restart_all()
                self._replace_dead()
        finally:
            self._stop([w.process for w in self.workers])
            self.reservation.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.exit_code

    def _start(self) -> Worker:
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        process = context.Process(target=worker_main, args=(self.settings, ready), daemon=False)
        process.start()
        logger.info("started worker [%s]", process.pid)
        return Worker(process, ready)

    def _replace_dead(self) -> None:
        for i, (process, _) in enumerate(self.workers):
            if process.is_alive() or self.stopping.is_set():
                continue
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                logger.error("worker [%s] failed to start; stopping", process.pid)
                self.exit_code = STARTUP_FAILURE
                self.stopping.set()
                return
            logger.warning("worker [%s] exited with %s; starting another", process.pid, process.exitcode)
            self.workers[i] = self._start()

    def _restart_all(self) -> None:
        """SIGHUP: each worker in turn is replaced by a new one, stopped once the new one listens."""
        logger.info("SIGHUP: replacing the workers one at a time")
        for i, old in enumerate(self.workers):
            if self.stopping.is_set():
                return
            new = self._start()
            if not self._wait_ready(new):
                if not self.stopping.is_set():
                    logger.error(
                        "worker [%s] was not ready; keeping worker [%s], restart abandoned",
                        new.process.pid,
                        old.process.pid,
                    )
                self._stop([new.process])
                return
            self._stop([old.process])
            self.workers[i] = new

    def _wait_ready(self, worker: Worker) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and not self.stopping.is_set() and worker.process.is_alive():
            if worker.ready.wait(0.1):
                return True
        return False

    def _stop(self, processes: list[SpawnProcess]) -> None:
        """SIGTERM to each (they drain), then wait; one that outlives the drain is killed."""
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join(self.stop_timeout_s)
            if process.is_alive():
                logger.error(
                    "worker [%s] did not stop in %.0f s; killing it", process.pid, self.stop_timeout_s
                )
                process.kill()
                process.join()
