"""A connection's writes leave together: uvicorn's httptools protocol with writes held to the end of
the event loop's turn.

uvicorn writes a response's status line and headers when the app sends ``http.response.start`` and
the body when it sends ``http.response.body``: two ``write`` calls, two TCP segments, and a client
that wakes for the head, finds no body and sleeps again. Under concurrent load each response also
wakes the client on its own, however many the loop finished in the same turn.

``GatewayHttpProtocol`` hands uvicorn a transport (``CoalescingTransport``) that keeps what is
written and sends it with one ``write`` (``writelines`` for several pieces) once the loop's current
callbacks have run (``call_soon``): a response leaves in one segment, and the responses a turn of
the loop finished leave one after another, so a client reading many connections wakes once for
them. A response waits at most for the callbacks already queued in that turn; the transport closes
only after what it holds is sent, and what a closed connection held is dropped, as the socket would.

The protocol also holds each connection to the limits of ``WireLimits`` (the app's ``wire_limits``,
from the settings) before the app sees a request: a request line longer than ``max_header_bytes``
is answered 414, headers past ``max_headers`` fields or ``max_header_bytes`` bytes 431 (the bytes of
a head still incomplete are counted as they arrive, so one that never ends is refused as soon as it
passes the limit); a head not complete ``head_timeout_s`` after its first byte (or after the
connection opened, for a silent one), or a body not complete ``body_timeout_s`` after its head, 408.
Each of these closes the connection. A request pays a few comparisons and two clock reads: one
``ConnectionSweeper`` per event loop looks at the open connections a few times a second, instead of
a timer per request.
"""

from __future__ import annotations

import asyncio
import secrets
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

__all__ = ["CoalescingTransport", "ConnectionSweeper", "GatewayHttpProtocol", "WireLimits"]

Chunk = bytes | bytearray | memoryview


class CoalescingTransport:
    """Holds writes until the event loop's callbacks queued before them have run, then sends them
    in one call (see the module docstring); everything else goes to the wrapped transport."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[Chunk] = []

    def write(self, data: Chunk) -> None:
        held = self._held
        held.append(data)
        if len(held) == 1:
            self._loop.call_soon(self.flush)

    def writelines(self, chunks: Iterable[Chunk]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what is held now (nothing if the connection is closing: the peer is gone)."""
        held = self._held
        if not held:
            return
        self._held = []
        transport = self._transport
        if transport.is_closing():
            return
        if len(held) == 1:
            transport.write(held[0])
        else:
            transport.writelines(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = []
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:  # the rest of asyncio.Transport, unchanged
        return getattr(self._transport, name)


@dataclass(frozen=True, slots=True)
class WireLimits:
    """What one connection may send before the app sees a request (see the module docstring).
    ``on_refusal`` is told the reason of each refusal (``headers_too_large``, ``uri_too_long``,
    ``request_timeout``)."""

    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    head_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    on_refusal: Callable[[str], None] | None = None


_IDLE, _HEAD, _BODY = 0, 1, 2  # between requests (the app may be running), reading a head, a body
_REFUSALS = {
    408: ("request_timeout", "the request was not received in time"),
    414: ("uri_too_long", "the request line is longer than the limit"),
    431: ("headers_too_large", "the request headers pass the limit on their size or number"),
}


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request the limits refuse."""


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a ``CoalescingTransport``, holding each
    connection to ``WireLimits``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = getattr(self.app, "wire_limits", None)
        self.limits: WireLimits = limits if isinstance(limits, WireLimits) else WireLimits()
        self._phase = _HEAD
        self._since = 0.0  # loop time the current phase began
        self._head_bytes = 0  # bytes received while reading the current head
        self._refusal = 0  # the status a parser callback refused the request with

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        self._since = self.loop.time()
        ConnectionSweeper.of(self.loop).watch(self)

    def connection_lost(self, exc: Exception | None) -> None:
        ConnectionSweeper.of(self.loop).forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # The first bytes of the next request. (A request pipelined behind another in the same read
        # gets its head deadline from the next read; with no next read, uvicorn's keep-alive timeout
        # closes the connection once the response before it has gone.)
        if self._phase == _IDLE:
            self._phase = _HEAD
            self._since = self.loop.time()
            self._head_bytes = 0
        if self._phase == _HEAD:
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self._refusal:
                self.refuse(self._refusal)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._phase == _HEAD and self._head_bytes > self.limits.max_header_bytes:
            self.refuse(431)

    def on_headers_complete(self) -> None:
        limits = self.limits
        # The checks cost nothing for a head that arrived with fewer bytes than the limit (what
        # data_received counted includes the head); only a larger read adds up its fields.
        if self._head_bytes > limits.max_header_bytes or len(self.headers) > limits.max_headers:
            if len(self.url) > limits.max_header_bytes:
                self._refusal = 414
                raise _Refused
            size = len(self.url) + sum([len(name) + len(value) for name, value in self.headers])
            if size > limits.max_header_bytes or len(self.headers) > limits.max_headers:
                self._refusal = 431
                raise _Refused
        self._phase = _BODY
        self._since = self.loop.time()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        cycle = self.cycle  # uvicorn's on_message_complete from here on, without the call
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        cycle.more_body = False
        cycle.message_event.set()

    def overdue(self, now: float) -> bool:
        """Whether the head or body being read has passed its deadline at loop time ``now``."""
        phase = self._phase
        if phase == _HEAD:
            return now - self._since > self.limits.head_timeout_s
        return phase == _BODY and now - self._since > self.limits.body_timeout_s

    def refuse(self, status: int) -> None:
        """Answer ``status`` (408, 414 or 431) with the gateway's error body where no response of
        this connection is under way, then close the connection. An app waiting for the body of
        the refused request is told the client has gone."""
        transport = self.transport
        if transport.is_closing():
            return
        code, message = _REFUSALS[status]
        if self.limits.on_refusal is not None:
            self.limits.on_refusal(code)
        cycle = self.cycle
        writing = cycle is not None and cycle.response_started and not cycle.response_complete
        if self._phase == _HEAD:  # a new request: answer unless nothing of it came (a silent connection)
            answer = not writing and (status != 408 or self._head_bytes > 0)
        else:  # its body: answer unless the app already has
            answer = cycle is not None and not cycle.response_started
        if answer:
            transport.write(_refusal_response(status, code, message))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        self._phase = _IDLE
        transport.close()


def _refusal_response(status: int, code: str, message: str) -> bytes:
    request_id = "wire-" + secrets.token_hex(6)
    body = orjson.dumps(
        {"error": {"code": code, "message": message, "details": []}, "request_id": request_id}
    )
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-request-id: %s\r\n" % request_id.encode(),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class ConnectionSweeper:
    """Closes the connections of one event loop whose head or body is overdue (``refuse(408)``),
    looking at them every ``interval_s`` while there are any."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ConnectionSweeper] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.connections: set[GatewayHttpProtocol] = set()
        self.interval_s = 1.0
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> ConnectionSweeper:
        sweeper = cls._by_loop.get(loop)
        if sweeper is None:
            sweeper = cls._by_loop[loop] = cls(loop)
        return sweeper

    def watch(self, connection: GatewayHttpProtocol) -> None:
        self.connections.add(connection)
        limits = connection.limits
        # a quarter of the shortest deadline, so a connection is closed at most 25% late
        shortest = min(limits.head_timeout_s, limits.body_timeout_s)
        self.interval_s = min(self.interval_s, max(0.01, shortest / 4))
        if self._timer is None:
            self._timer = self.loop.call_later(self.interval_s, self.sweep)

    def forget(self, connection: GatewayHttpProtocol) -> None:
        self.connections.discard(connection)

    def sweep(self) -> None:
        self._timer = None
        now = self.loop.time()
        for connection in [c for c in self.connections if c.overdue(now)]:
            connection.refuse(408)
        if self.connections:
            self._timer = self.loop.call_later(self.interval_s, self.sweep)
