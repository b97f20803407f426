"""The gateway against hostile clients, over raw sockets: one test per kind of abuse, each followed by
a canary request that must still get the right answer from the same server.

One ``bundle serve`` (real uvicorn on 127.0.0.1) serves the whole module with small limits, so each
abuse is cheap to send: 8 KiB of headers, 50 header fields, 1 s to send a head or a body, a 64 KiB
body, 500 ms to infer."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from test_serve_socket import Server, free_port, serve

import bundle_factory as bf
from bundlegate.batching import usable_cpus
from bundlegate.keys import create_key

pytestmark = [pytest.mark.socket, pytest.mark.slow]

LIMITS = {
    "BUNDLEGATE_MAX_HEADER_BYTES": "8192",
    "BUNDLEGATE_MAX_HEADERS": "50",
    "BUNDLEGATE_HEAD_TIMEOUT_S": "1",
    "BUNDLEGATE_BODY_TIMEOUT_S": "1",
    "BUNDLEGATE_MAX_BODY_BYTES": "65536",
    "BUNDLEGATE_REQUEST_TIMEOUT_MS": "500",
}
READ_TIMEOUT_S = 10.0  # longest wait for the server to answer or close (deadlines above are 1 s)
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


class Gateway:
    def __init__(self, server: Server, key: str) -> None:
        self.server = server
        self.key = key
        self.port = server.port
        self.metrics_port = 0

    def canary(self) -> None:
        """A well-formed prediction gets the right answer."""
        r = httpx.post(
            f"{self.server.url}/v1/models/iris/predict",
            json={"inputs": SETOSA},
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=READ_TIMEOUT_S,
        )
        assert r.status_code == 200, r.text
        assert r.json()["prediction"] == "setosa"

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=READ_TIMEOUT_S)
        return sock

    def exchange(self, data: bytes) -> bytes:
        """Send ``data`` on a new connection; everything the server sends until it closes."""
        with self.connect() as sock:
            sock.sendall(data)
            return read_until_closed(sock)

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> bytes:
        head = [f"{method} {path} HTTP/1.1", "Host: gateway", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        with self.connect() as sock:
            sock.sendall(("\r\n".join([*head, "Connection: close", "", ""])).encode("utf-8") + body)
            return read_until_closed(sock)


def read_until_closed(sock: socket.socket) -> bytes:
    """What the peer sends until it closes the connection (a test fails if it does not in time)."""
    chunks = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    else:
        pytest.fail("the server kept the connection open")
    return b"".join(chunks)


def status(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("hostile")
    repo = root / "bundles"
    repo.mkdir()
    bf.write(repo, bf.iris_model())
    bf.write(repo, bf.slow_model())
    key = create_key(root / "keys.json", "canary", ["*"])
    metrics_port = free_port()
    env = LIMITS | {"BUNDLEGATE_METRICS_PORT": str(metrics_port)}
    with serve(root, str(repo), "--keys", str(root / "keys.json"), env=env) as server:
        gateway = Gateway(server, key)
        gateway.metrics_port = metrics_port
        yield gateway


@pytest.fixture
def g(gateway: Gateway) -> Iterator[Gateway]:
    """The module's gateway; the canary runs after the test."""
    yield gateway
    gateway.canary()


# ----------------------------------------------------------------------------- the request head


def test_a_huge_header_is_refused_with_431_and_the_connection_closed(g: Gateway) -> None:
    answer = g.request("GET", "/healthz", headers={"X-Junk": "a" * 100_000})
    assert status(answer) == 431
    assert b"headers_too_large" in answer


def test_too_many_header_fields_are_refused_with_431(g: Gateway) -> None:
    answer = g.request("GET", "/healthz", headers={f"X-Field-{i}": "1" for i in range(60)})
    assert status(answer) == 431


def test_a_head_that_never_ends_is_refused_before_it_grows(g: Gateway) -> None:
    with g.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Endless: ")
        sent = 0
        with contextlib.suppress(OSError):  # the server may close while we still send
            while sent < 1_000_000:
                sock.sendall(b"a" * 16384)
                sent += 16384
        answer = read_until_closed(sock)
    assert sent < 1_000_000 or status(answer) == 431  # refused long before a megabyte
    if answer:
        assert status(answer) == 431


def test_a_long_request_line_is_refused_with_414(g: Gateway) -> None:
    assert status(g.request("GET", "/healthz?" + "q" * 20_000)) == 414


def test_a_head_sent_too_slowly_is_answered_408_and_closed(g: Gateway) -> None:
    with g.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n")
        for _ in range(3):  # a byte now and then keeps no deadline alive
            time.sleep(0.4)
            with contextlib.suppress(OSError):
                sock.sendall(b"X")
        answer = read_until_closed(sock)
    assert status(answer) == 408
    assert time.monotonic() - started < READ_TIMEOUT_S


def test_a_silent_connection_is_closed(g: Gateway) -> None:
    with g.connect() as sock:
        assert read_until_closed(sock) == b""


def test_many_idle_connections_are_all_closed(g: Gateway) -> None:
    socks = [g.connect() for _ in range(50)]
    try:
        for i, sock in enumerate(socks):
            if i % 2:
                sock.sendall(b"POST /v1/models/iris/predict HTTP/1.1\r\n")
        g.canary()  # served while they idle
        for sock in socks:
            read_until_closed(sock)
    finally:
        for sock in socks:
            sock.close()


# ----------------------------------------------------------------------------- the request body


def test_a_body_sent_too_slowly_is_answered_408_and_closed(g: Gateway) -> None:
    with g.connect() as sock:
        head = (
            "POST /v1/models/iris/predict HTTP/1.1\r\nHost: gateway\r\n"
            f"Authorization: Bearer {g.key}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"inputs": ')
        answer = read_until_closed(sock)
    assert status(answer) == 408


def test_after_413_the_connection_is_closed_and_what_follows_is_not_read(g: Gateway) -> None:
    with g.connect() as sock:
        head = (
            "POST /v1/models/iris/predict HTTP/1.1\r\nHost: gateway\r\n"
            f"Authorization: Bearer {g.key}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        sent = 0
        with contextlib.suppress(OSError):  # the server closes while we still send
            while sent < 50_000_000:
                sock.sendall(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
                sent += 0x4000
        answer = read_until_closed(sock)
    assert status(answer) == 413
    assert b"connection: close" in answer.lower()
    assert sent < 50_000_000


def test_413_for_a_declared_length_closes_the_connection(g: Gateway) -> None:
    with g.connect() as sock:
        head = (
            "POST /v1/models/iris/predict HTTP/1.1\r\nHost: gateway\r\n"
            f"Authorization: Bearer {g.key}\r\nContent-Type: application/json\r\n"
            "Content-Length: 10000000\r\n\r\n"
        )
        sock.sendall(head.encode())
        answer = read_until_closed(sock)
    assert status(answer) == 413
    assert answer.count(b"HTTP/1.1") == 1


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/iris/predict",  # one record
        "/v1/models/iris/predict/batch",  # positional rows: the flat path
        "/v2/models/iris/infer",
    ],
)
def test_a_byte_order_mark_is_refused_on_every_body_path(g: Gateway, path: str) -> None:
    bodies = {
        "/v1/models/iris/predict": b'{"inputs": {"sepal_length": 5.1, "sepal_width": 3.5, '
        b'"petal_length": 1.4, "petal_width": 0.2}}',
        "/v1/models/iris/predict/batch": b'{"inputs": [[5.1, 3.5, 1.4, 0.2]]}',
        "/v2/models/iris/infer": b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", '
        b'"data": [5.1, 3.5, 1.4, 0.2]}]}',
    }
    plain = g.request("POST", path, bodies[path], auth(g.key))
    assert status(plain) == 200
    answer = g.request("POST", path, b"\xef\xbb\xbf" + bodies[path], auth(g.key))
    assert status(answer) == 400


# ----------------------------------------------------------------------------- keys and paths


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_a_credential_header_given_twice_is_refused(g: Gateway, header: str) -> None:
    value = f"Bearer {g.key}" if header == "Authorization" else g.key
    lines = [
        "POST /v1/models/iris/predict HTTP/1.1",
        "Host: gateway",
        "Content-Type: application/json",
        f"{header}: {value}",
        f"{header}: {value}",
        "Content-Length: 2",
        "Connection: close",
        "",
        "{}",
    ]
    answer = g.exchange("\r\n".join(lines).encode())
    assert status(answer) == 401


# superscript two, circled one, fullwidth one, Arabic-Indic one
@pytest.mark.parametrize("version", ["\u00b2", "\u2460", "\uff11", "\u0661", "1\u00b2"])
def test_a_version_segment_of_non_ascii_digits_is_an_unknown_version(g: Gateway, version: str) -> None:
    body = b'{"inputs": {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}}'
    path = "/v1/models/iris/versions/" + "".join(f"%{b:02X}" for b in version.encode()) + "/predict"
    assert status(g.request("POST", path, body, auth(g.key))) == 404


@pytest.mark.parametrize(
    "path",
    [
        "/metrics",
        "/v1/models",
        "/v1/models/iris",
        "/v2/models/iris",
        "/v2/models/iris/ready",
        "/v2",
        "/openapi.json",
        "/docs",
    ],
)
def test_nothing_on_the_data_port_names_a_model_to_a_caller_without_a_key(g: Gateway, path: str) -> None:
    answer = g.request("GET", path)
    assert status(answer) in (200, 401, 404)
    assert b"iris" not in answer
    assert b"slow" not in answer


def test_the_metrics_port_serves_the_metrics(g: Gateway) -> None:
    r = httpx.get(f"http://127.0.0.1:{g.metrics_port}/metrics", timeout=READ_TIMEOUT_S)
    assert r.status_code == 200
    assert 'model="iris"' in r.text
    other = httpx.get(f"http://127.0.0.1:{g.metrics_port}/v1/models", timeout=READ_TIMEOUT_S)
    assert other.status_code == 404


# ----------------------------------------------------------------------------- inference


@pytest.mark.skipif(usable_cpus() < 2, reason="on one CPU a call runs on the event loop: no timer stops it")
def test_a_stuck_inference_is_stopped_at_its_deadline(g: Gateway) -> None:
    stuck = b'{"inputs": {"n": 10000000}}'
    started = time.monotonic()
    assert status(g.request("POST", "/v1/models/slow/predict", stuck, auth(g.key))) == 504
    quick = g.request("POST", "/v1/models/slow/predict", b'{"inputs": {"n": 7}}', auth(g.key))
    assert status(quick) == 200
    assert b'"prediction":7.0' in quick
    assert time.monotonic() - started < 5.0  # the stuck call alone runs for ~10 s
