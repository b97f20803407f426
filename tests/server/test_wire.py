"""``CoalescingTransport`` on a real socket pair and event loop: what a connection writes during one
turn of the loop reaches the peer together at its end, in order, once; closing sends what is held; a
connection whose peer has gone drops it quietly. (The whole protocol under ``bundle serve`` is
exercised by every socket test; 100-continue and pipelining in test_serve_socket.)"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from bundlegate.server.wire import CoalescingTransport


@dataclass
class Counted:
    """The real transport, with its write calls counted (what the kernel is asked to send)."""

    transport: asyncio.Transport
    calls: list[list[bytes]] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.calls.append([bytes(data)])
        self.transport.write(data)

    def writelines(self, chunks: list[bytes]) -> None:
        self.calls.append([bytes(c) for c in chunks])
        self.transport.writelines(chunks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


@dataclass
class Pair:
    held: CoalescingTransport
    counted: Counted
    peer: socket.socket

    def received(self) -> bytes:
        """Everything the peer can read now (without waiting)."""
        chunks = []
        while True:
            try:
                chunk = self.peer.recv(65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    counted = Counted(transport)
    yield Pair(CoalescingTransport(counted, loop), counted, peer)  # type: ignore[arg-type]
    transport.close()
    peer.close()
    await asyncio.sleep(0)


async def _turn() -> None:
    """Let the loop run the callbacks queued so far (and the socket send)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_head_and_body_leave_together_at_the_end_of_the_turn(pair: Pair) -> None:
    pair.held.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    pair.held.write(b"{}")
    assert pair.received() == b""  # nothing left during the turn that wrote it
    await _turn()
    assert pair.received() == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
    assert pair.counted.calls == [[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", b"{}"]]


async def test_each_turn_sends_what_it_wrote_once_and_in_order(pair: Pair) -> None:
    pair.held.write(b"a")
    await _turn()
    pair.held.writelines([b"b", bytearray(b"c"), memoryview(b"d")])
    pair.held.write(b"e")
    await _turn()
    await _turn()  # nothing more is scheduled: no repeat
    assert pair.received() == b"abcde"
    assert pair.counted.calls == [[b"a"], [b"b", b"c", b"d", b"e"]]


async def test_close_sends_what_is_held_first(pair: Pair) -> None:
    pair.held.write(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
    pair.held.close()
    await _turn()
    assert pair.received() == b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n"
    assert pair.held.is_closing()


async def test_what_a_closed_connection_held_is_dropped_quietly(pair: Pair) -> None:
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
    pair.held.write(b"late answer")
    pair.counted.transport.close()  # the peer went away before the turn ended
    await _turn()
    assert pair.counted.calls == []
    assert errors == []


async def test_reading_is_the_real_transports(pair: Pair) -> None:
    pair.held.pause_reading()
    assert not pair.counted.transport.is_reading()
    pair.held.resume_reading()
    assert pair.counted.transport.is_reading()
    assert pair.held.get_extra_info("socket") is not None
    assert pair.held.get_write_buffer_size() == 0  # the rest of the Transport API passes through


def test_bundle_serve_runs_uvicorn_with_this_protocol_or_uvicorns_own_without_httptools(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    import uvicorn

    from bundlegate.server.config import uvicorn_options
    from bundlegate.server.wire import GatewayHttpProtocol
    from bundlegate.settings import Settings

    options = uvicorn_options(Settings())
    config = uvicorn.Config(app=lambda *args: None, http=options["http"])
    config.load()
    assert config.http_protocol_class is GatewayHttpProtocol

    real_find_spec = importlib.util.find_spec

    def without_httptools(name: str, *args: Any) -> Any:
        return None if name == "httptools" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_httptools)
    assert uvicorn_options(Settings())["http"] == "auto"
