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
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingTransport", "GatewayHttpProtocol"]

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


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a ``CoalescingTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
