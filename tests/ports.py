"""A free TCP port on 127.0.0.1, for the servers the tests start (a port can be taken between this
probe and the bind, so starters that can retry do)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
