"""``bundle serve`` for real: a uvicorn subprocess on 127.0.0.1 and a free port, called with httpx and
with the Open Inference Protocol client tritonclient.http, then stopped with SIGTERM."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

import bundle_factory as bf
from bundlegate.cli import cli
from bundlegate.keys import create_key
from bundlegate.settings import Settings
from ports import free_port

pytestmark = [pytest.mark.socket, pytest.mark.slow]

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
IRIS_ROWS = bf.iris_model().X[::30]


def text(values: Any) -> list[str]:
    """BYTES answers as str (tritonclient gives bytes for binary outputs, str for JSON ones)."""
    return [v.decode() if isinstance(v, bytes) else v for v in values.tolist()]


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    stderr_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"bundle serve exited with {self.process.returncode}:\n{self.stderr()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        pytest.fail(f"bundle serve not ready after {STARTUP_TIMEOUT_S}s:\n{self.stderr()[-3000:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
                pytest.fail("bundle serve did not stop on SIGTERM")
        return self.process.returncode


@contextlib.contextmanager
def serve(
    tmp_path: Path,
    *args: str,
    module: str = "bundlegate.cli serve",
    env: dict[str, str] | None = None,
    wait: bool = True,
) -> Iterator[Server]:
    """Run ``python -m <module> <args> --port <free port>`` in ``tmp_path`` until it is ready (at once
    with ``wait=False``); stdout goes to ``stdout-<port>.log`` and stderr to ``serve-<port>.log``."""
    port = free_port()
    stderr_path = tmp_path / f"serve-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUNDLEGATE_")} | (env or {})
    with stderr_path.open("w") as err, (tmp_path / f"stdout-{port}.log").open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", *module.split(), *args, "--port", str(port)],
            stdout=out,
            stderr=err,
            env=env,
            text=True,
            cwd=tmp_path,
        )
    server = Server(process, port, stderr_path)
    try:
        if wait:
            server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("socket") / "bundles"
    repo.mkdir()
    bf.write(repo, bf.iris_model())
    bf.write(repo, bf.mixed_model())
    return repo


def test_serve_answers_httpx_and_tritonclient_then_stops_on_sigterm(repo: Path, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, "socket-test", ["*"])
    admin_key = create_key(keys_file, "socket-admin", ["*"], admin=True)
    auth = {"Authorization": f"Bearer {key}"}
    clf = bf.iris_model().estimator
    with serve(tmp_path, str(repo), "--keys", str(keys_file)) as server:
        # httpx, /v1
        record = dict(zip(bf.IRIS_FEATURES, IRIS_ROWS[0].tolist(), strict=True))
        r = httpx.post(f"{server.url}/v1/models/iris/predict", json={"inputs": record}, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["prediction"] == clf.predict(IRIS_ROWS[:1])[0]
        assert r.headers["x-model-version"] == "1"
        batch = httpx.post(
            f"{server.url}/v1/models/iris/predict/batch", json={"inputs": IRIS_ROWS.tolist()}, headers=auth
        )
        assert batch.json()["predictions"] == clf.predict(IRIS_ROWS).tolist()
        assert np.allclose(batch.json()["probabilities"], clf.predict_proba(IRIS_ROWS), atol=1e-5)
        assert httpx.post(f"{server.url}/v1/models/iris/predict", json={"inputs": record}).status_code == 401
        big = b'{"inputs": "' + b"x" * (17 * 1024 * 1024) + b'"}'  # over the 16 MiB default
        too_large = httpx.post(
            f"{server.url}/v1/models/iris/predict",
            content=big,
            headers=auth | {"Content-Type": "application/json"},
            timeout=30,
        )
        assert too_large.status_code == 413
        assert too_large.json()["error"]["code"] == "payload_too_large"
        assert "bundlegate_requests_total" in httpx.get(f"{server.url}/metrics", headers=auth).text

        # tritonclient, /v2
        import tritonclient.http as triton

        client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        try:
            assert client.is_server_live()
            assert client.is_server_ready()
            assert client.is_model_ready("iris", headers=auth)
            meta = client.get_model_metadata("iris", headers=auth)
            assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
            for binary in (False, True):
                tensor = triton.InferInput("input", list(IRIS_ROWS.shape), "FP64")
                tensor.set_data_from_numpy(IRIS_ROWS, binary_data=binary)
                result = client.infer("iris", [tensor], headers=auth, request_id="t-1")
                labels = [
                    v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").tolist()
                ]
                assert labels == clf.predict(IRIS_ROWS).tolist()
                assert np.allclose(result.as_numpy("probabilities"), clf.predict_proba(IRIS_ROWS), atol=1e-5)
                assert result.get_response()["id"] == "t-1"
            # tritonclient adds Content-Encoding to the headers dict it is given: pass a copy
            gzipped = client.infer("iris", [tensor], headers=dict(auth), request_compression_algorithm="gzip")
            assert text(gzipped.as_numpy("label")) == clf.predict(IRIS_ROWS).tolist()
            mixed = bf.mixed_model()
            X = mixed.X.iloc[:5].fillna({"age": 40.0})
            tensors = []
            for name, datatype, values in (
                ("age", "FP64", X["age"].to_numpy().reshape(-1, 1)),
                ("income", "FP64", X["income"].to_numpy().reshape(-1, 1)),
                ("city", "BYTES", X["city"].to_numpy(dtype=object).reshape(-1, 1)),
            ):
                t = triton.InferInput(name, [5, 1], datatype)
                t.set_data_from_numpy(values)
                tensors.append(t)
            result = client.infer("credit", tensors, headers=auth)
            labels = text(result.as_numpy("label"))
            assert labels == mixed.estimator.predict(X).tolist()
            with pytest.raises(triton.InferenceServerException) as no_key:
                client.get_model_metadata("iris")  # no key
            # the OIP error layout: the client can show the server's message
            assert "key" in str(no_key.value)
            assert no_key.value.status() == "401"
            # the repository extension, for admin keys only
            admin = {"Authorization": f"Bearer {admin_key}"}
            index = client.get_model_repository_index(headers=admin)
            assert {(m["name"], m["state"]) for m in index} == {("iris", "READY"), ("credit", "READY")}
            with pytest.raises(triton.InferenceServerException):
                client.get_model_repository_index(headers=auth)
            client.unload_model("credit", headers=admin)
            assert not client.is_model_ready("credit", headers=auth)
            client.load_model("credit", headers=admin)
            assert client.is_model_ready("credit", headers=auth)
        finally:
            client.close()
        code = server.stop()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells how it ended
    assert code in (0, -signal.SIGTERM)
    log = server.stderr()
    assert "Application shutdown complete" in log
    access = [json.loads(line) for line in log.splitlines() if line.startswith('{"ts"')]
    assert any(a["path"] == "/v2/models/{name}/infer" and a["key_id"] == "socket-test" for a in access)
    assert key not in log


def test_insecure_mode_binds_loopback_and_warns(repo: Path, tmp_path: Path) -> None:
    with serve(tmp_path, str(repo), "--insecure-no-auth", "--host", "0.0.0.0") as server:
        r = httpx.post(f"{server.url}/v1/models/iris/predict", json={"inputs": IRIS_ROWS[0].tolist()})
        assert r.status_code == 200
        assert "INSECURE" in server.stderr()
        assert f"http://127.0.0.1:{server.port}" in server.stderr()


def test_devserve_prints_a_key_and_a_curl_line_that_predicts(repo: Path, tmp_path: Path) -> None:
    with serve(tmp_path, str(repo), module="bundlegate.cli.devserve") as server:
        out = (tmp_path / f"stdout-{server.port}.log").read_text()
        curl = next(line.strip() for line in out.splitlines() if line.strip().startswith("curl -s http"))
        assert "/v1/models/iris/predict" in curl
        if shutil.which("curl"):
            answer = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=30, check=True)
            body = json.loads(answer.stdout)
        else:  # run the same request with httpx
            argv = shlex.split(curl)
            headers = dict(h.split(": ", 1) for h in (argv[i + 1] for i, a in enumerate(argv) if a == "-H"))
            data = argv[argv.index("-d") + 1]
            body = httpx.post(argv[2], content=data, headers=headers).json()
        assert body["model"] == "iris"
        assert body["prediction"] == bf.iris_model().estimator.predict(IRIS_ROWS[:1])[0]
        keys_file = tmp_path / ".dev" / "keys.json"
        assert keys_file.exists()
        key = next(w for w in out.split() if w.startswith("bg_"))
        assert key not in keys_file.read_text()  # only its hash is stored
        assert oct(keys_file.stat().st_mode & 0o777) == "0o600"


def test_two_workers_serve_and_share_metrics(repo: Path, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    auth = {"Authorization": "Bearer " + create_key(keys_file, "workers", ["*"])}
    with serve(tmp_path, str(repo), "--keys", str(keys_file), "--workers", "2") as server:
        with httpx.Client(base_url=server.url, headers=auth) as client:
            for _ in range(10):
                r = client.post("/v1/models/iris/predict", json={"inputs": IRIS_ROWS[0].tolist()})
                assert r.status_code == 200
        # each request may land on either worker; /metrics sums all workers
        with httpx.Client(base_url=server.url, headers=auth) as client:
            text = client.get("/metrics").text
        line = next(
            ln
            for ln in text.splitlines()
            if ln.startswith("bundlegate_requests_total{")
            and 'endpoint="v1_predict"' in ln
            and 'code="200"' in ln
            and 'model="iris"' in ln
        )
        assert float(line.rsplit(" ", 1)[1]) == 10


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _server_connections(port: int) -> dict[int, str]:
    """Socket inode → state of every TCP socket on local ``port`` (from /proc/net/tcp; 0A = listening,
    01 = established)."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] != "0":
            found[int(fields[9])] = fields[3]
    return found


def _sockets_of(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def _connections_per_worker(server: Server, workers: list[int], expected: int) -> list[int]:
    """How many accepted connections each worker holds, once ``expected`` are accepted."""
    deadline = time.monotonic() + 10
    while True:
        established = {i for i, state in _server_connections(server.port).items() if state == "01"}
        counts = [len(established & _sockets_of(pid)) for pid in workers]
        if sum(counts) >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.02)


def _listening_workers(server: Server, count: int) -> list[int]:
    """The pids of the serve process's children that listen on its port, once ``count`` do."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        listening = {i for i, state in _server_connections(server.port).items() if state == "0A"}
        found = [pid for pid in _children(server.process.pid) if _sockets_of(pid) & listening]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _workers_replacing(server: Server, gone: list[int]) -> list[int]:
    """The two listening workers once none of ``gone`` is among them (what there is at the deadline)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        now = _listening_workers(server, 2)
        if (len(now) == 2 and not set(now) & set(gone)) or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc")
def test_two_workers_share_a_burst_of_keep_alive_connections(repo: Path, tmp_path: Path) -> None:
    """A client that opens its pool at once (wrk's 16 connections, a service's keep-alive pool) gets
    both workers: with one shared listening socket, whichever worker woke first accepted every pending
    connection and the other stayed idle for the life of the pool (16/0 in 1 of 20 wrk runs)."""
    keys_file = tmp_path / "keys.json"
    create_key(keys_file, "burst", ["*"])
    with serve(tmp_path, str(repo), "--keys", str(keys_file), "--workers", "2") as server:
        workers = _listening_workers(server, 2)
        assert len(workers) == 2
        for _ in range(40):
            pool = [socket.socket() for _ in range(16)]
            try:
                for s in pool:
                    s.setblocking(False)
                    s.connect_ex(("127.0.0.1", server.port))
                counts = _connections_per_worker(server, workers, len(pool))
            finally:
                for s in pool:
                    s.close()
            assert sum(counts) == len(pool), counts
            assert min(counts) >= 1, f"one worker took the whole pool: {counts}"
        # the server still answers after the bursts
        assert httpx.get(server.url + "/readyz").status_code == 200


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc")
def test_a_dead_worker_is_replaced_and_sigterm_stops_cleanly(repo: Path, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    auth = {"Authorization": "Bearer " + create_key(keys_file, "restart", ["*"])}
    with serve(tmp_path, str(repo), "--keys", str(keys_file), "--workers", "2") as server:
        first = _listening_workers(server, 2)
        assert len(first) == 2
        os.kill(first[0], signal.SIGKILL)
        now = _workers_replacing(server, [first[0]])
        assert sorted(now) != sorted(first), (first, now)
        assert first[1] in now, (first, now)
        assert len(now) == 2, (first, now)
        for _ in range(20):  # fresh connections: the kernel spreads them over both
            r = httpx.post(
                f"{server.url}/v1/models/iris/predict", json={"inputs": IRIS_ROWS[0].tolist()}, headers=auth
            )
            assert r.status_code == 200
        assert server.stop() == 0  # uvicorn's own supervisor exited -15 here
    log = server.stderr()
    assert f"worker [{first[0]}] exited with -9; starting another" in log
    assert "Traceback" not in log


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc")
def test_sighup_replaces_the_workers_while_the_server_keeps_answering(repo: Path, tmp_path: Path) -> None:
    """SIGHUP (as with uvicorn's supervisor) replaces each worker in turn, the old one stopped only once
    its replacement listens: requests on fresh connections keep being answered throughout."""
    keys_file = tmp_path / "keys.json"
    auth = {"Authorization": "Bearer " + create_key(keys_file, "hup", ["*"])}
    with serve(tmp_path, str(repo), "--keys", str(keys_file), "--workers", "2") as server:
        before = _listening_workers(server, 2)
        assert len(before) == 2
        answered: list[float] = []
        failed: list[str] = []
        done = threading.Event()

        def hammer() -> None:
            deadline = time.monotonic() + 120
            while not done.is_set() and time.monotonic() < deadline:
                try:  # a new connection each time: the kernel picks a listening worker for each
                    r = httpx.post(
                        f"{server.url}/v1/models/iris/predict",
                        json={"inputs": IRIS_ROWS[0].tolist()},
                        headers=auth,
                        timeout=10,
                    )
                    if r.status_code == 200:
                        answered.append(time.monotonic())
                    else:
                        failed.append(r.text)
                except httpx.HTTPError as e:
                    failed.append(repr(e))
                time.sleep(0.01)

        client = threading.Thread(target=hammer)
        client.start()
        try:
            time.sleep(0.5)
            started = time.monotonic()
            server.process.send_signal(signal.SIGHUP)
            after = _workers_replacing(server, before)
            time.sleep(0.5)
        finally:
            done.set()
            client.join()
        assert len(after) == 2, after
        assert not set(after) & set(before), (before, after)
        assert server.process.poll() is None
        during = [t for t in answered if t > started]
        assert len(during) > 20
        gaps = [b - a for a, b in itertools.pairwise(answered)]
        assert max(gaps) < 1.0, f"no answer for {max(gaps):.1f} s during the restart"
        # a connection queued at an old worker in the instant it closes is reset (see workers.py)
        assert len(failed) <= 1, failed
    assert "SIGHUP: replacing the workers one at a time" in server.stderr()


def test_workers_take_connections_only_once_their_bundles_are_loaded(repo: Path, tmp_path: Path) -> None:
    """With --workers the kernel hands each connection to any listening worker, and /readyz answers
    for one worker only; so a worker listens only once its bundles are loaded. From the very first
    connection the port accepts, predictions are answered, never ``503 model_not_ready`` (a worker
    that listened while loading answered its first requests that way)."""
    keys_file = tmp_path / "keys.json"
    auth = {"Authorization": "Bearer " + create_key(keys_file, "early", ["*"])}
    with serve(tmp_path, str(repo), "--keys", str(keys_file), "--workers", "2", wait=False) as server:
        statuses: list[int] = []
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while len(statuses) < 30 and time.monotonic() < deadline:
            assert server.process.poll() is None, server.stderr()[-3000:]
            try:  # a fresh connection each time, from the moment anything listens
                r = httpx.post(
                    f"{server.url}/v1/models/iris/predict",
                    json={"inputs": IRIS_ROWS[0].tolist()},
                    headers=auth,
                    timeout=10,
                )
            except httpx.ConnectError:  # nothing listens yet (the parent holds the port unlistened)
                time.sleep(0.002)
                continue
            statuses.append(r.status_code)
        assert statuses == [200] * 30, statuses


def test_workers_on_a_port_in_use_is_one_error(repo: Path, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    create_key(keys_file, "busy", ["*"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["serve", str(repo), "--keys", str(keys_file), "--workers", "2", "--port", str(port)]
        result = subprocess.run(
            [sys.executable, "-m", "bundlegate.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert result.returncode == 1
    assert f"cannot bind 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_uvicorn_factory_reads_bundlegate_environment(repo: Path, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    auth = {"Authorization": "Bearer " + create_key(keys_file, "factory", ["iris"])}
    env = {"BUNDLEGATE_REPOSITORY": str(repo), "BUNDLEGATE_KEYS_FILE": str(keys_file)}
    args = ("--factory", "bundlegate.http.app:create_app", "--host", "127.0.0.1")
    with serve(tmp_path, *args, module="uvicorn", env=env) as server:
        r = httpx.post(
            f"{server.url}/v1/models/iris/predict", json={"inputs": IRIS_ROWS[0].tolist()}, headers=auth
        )
        assert r.status_code == 200
        assert r.json()["prediction"] == "setosa"
        assert httpx.get(f"{server.url}/v1/models/credit", headers=auth).status_code == 404


def test_serve_refuses_to_start_without_keys(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BUNDLEGATE_"):
            monkeypatch.delenv(name)
    result = CliRunner().invoke(cli, ["serve", str(repo)])
    assert result.exit_code == 1
    assert "no API keys" in result.output
    result = CliRunner().invoke(cli, ["serve", str(repo), "--keys", str(repo / "missing.json")])
    assert result.exit_code == 1
    assert "keys file not found" in result.output
    result = CliRunner().invoke(cli, ["serve", str(repo / "nowhere"), "--insecure-no-auth"])
    assert result.exit_code == 1
    assert "model repository not found" in result.output


def test_devserve_rotates_the_development_key_and_needs_sample_rows(tmp_path: Path, repo: Path) -> None:
    from bundlegate.cli.devserve import example_request, write_dev_key
    from bundlegate.keys import KeyStore

    path, first = write_dev_key(tmp_path / ".dev")
    _, second = write_dev_key(tmp_path / ".dev")
    store = KeyStore(path)
    assert store.authenticate(second).id == "dev"
    with pytest.raises(Exception, match="invalid API key"):
        store.authenticate(first)
    assert example_request(tmp_path / "no-such-repo") is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert example_request(empty) is None
    name, body = example_request(repo) or ("", {})
    assert name == "iris"
    assert set(body["inputs"]) == set(bf.IRIS_FEATURES)


EXAMPLES = Path(__file__).resolve().parents[2] / "bundles"


@pytest.mark.skipif(not (EXAMPLES / "iris").is_dir(), reason="the example bundles are not built")
def test_example_bundles_over_a_socket_equal_sklearn(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    auth = {"Authorization": "Bearer " + create_key(keys_file, "examples", ["*"])}
    versions = [p.parent for p in sorted(EXAMPLES.glob("*/*/bundle.json"))]
    with serve(tmp_path, str(EXAMPLES), "--keys", str(keys_file)) as server:
        checked = 0
        for version_dir in versions:
            manifest = json.loads((version_dir / "bundle.json").read_text())
            if not (manifest.get("sample_file") and manifest.get("expected_file")):
                continue
            sample = json.loads((version_dir / manifest["sample_file"]).read_text())
            expected = json.loads((version_dir / manifest["expected_file"]).read_text())
            url = f"{server.url}/v1/models/{manifest['name']}/versions/{manifest['version']}/predict/batch"
            r = httpx.post(url, json={"inputs": sample}, headers=auth)
            assert r.status_code == 200, r.text
            body = r.json()
            if "labels" in expected:
                assert body["predictions"] == expected["labels"]
                assert np.allclose(body["probabilities"], expected["probabilities"], atol=1e-4)
            else:
                assert np.allclose(np.ravel(body["predictions"]), np.ravel(expected["values"]), rtol=1e-4)
            checked += 1
        assert checked >= 3


def test_a_worker_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    """A worker that fails at startup is not restarted forever: the supervisor stops, exit 3."""
    from bundlegate.server import workers

    broken_keys = tmp_path / "keys.json"
    broken_keys.write_text("{not json")  # create_app refuses it in every worker
    settings = Settings(
        repository=tmp_path, port=0, workers=2, keys_file=broken_keys, log_level="critical", drain_timeout_s=1
    )
    supervisor = workers.Workers(settings)
    handlers = [signal.getsignal(sig) for sig in workers.STOP_SIGNALS]
    give_up = threading.Timer(STARTUP_TIMEOUT_S, supervisor.stopping.set)  # a restart loop ends too
    give_up.start()
    try:
        assert supervisor.run() == workers.STARTUP_FAILURE
    finally:
        give_up.cancel()
    assert all(not p.is_alive() for p in supervisor.processes)
    assert [signal.getsignal(sig) for sig in workers.STOP_SIGNALS] == handlers  # the caller's again


def _minor_faults(pid: int) -> int:
    """Minor page faults of a process so far (field 10 of /proc/PID/stat; the name may hold spaces)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[7])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc (and /proc) only")
@pytest.mark.parametrize("tuned", [True, False], ids=["default", "user-tuned-malloc"])
def test_large_batches_reuse_freed_memory_instead_of_faulting_it_back(
    repo: Path, tmp_path: Path, tuned: bool
) -> None:
    """A ~0.8 MB batch body allocates several buffers of its size and frees them; the serving process
    keeps that memory for the next request (``bundlegate.heap``) instead of handing it to the kernel and
    taking it back one page fault at a time (glibc's defaults: ~200 faults a request for this body).
    A user's own malloc settings win, and the log says which."""
    keys_file = tmp_path / "keys.json"
    auth = {"Authorization": "Bearer " + create_key(keys_file, "heap", ["*"])}
    env = {} if tuned else {"MALLOC_TOP_PAD_": str(128 * 1024)}  # glibc's default, set by the user
    rng = np.random.default_rng(7)
    body = json.dumps({"inputs": (rng.random((10_000, 4)) * 8).tolist()}).encode()
    assert len(body) > 700_000
    with serve(tmp_path, str(repo), "--keys", str(keys_file), env=env) as server:
        with httpx.Client(base_url=server.url, headers=auth | {"content-type": "application/json"}) as client:
            for _ in range(5):  # the first requests grow the heap
                assert client.post("/v1/models/iris/predict/batch", content=body).status_code == 200
            before = _minor_faults(server.process.pid)
            for _ in range(20):
                r = client.post("/v1/models/iris/predict/batch", content=body)
                assert r.status_code == 200
                assert len(r.json()["predictions"]) == 10_000
            per_request = (_minor_faults(server.process.pid) - before) / 20
        log = server.stderr()
    if tuned:
        assert "malloc keeps freed memory for reuse" in log
        assert per_request < 20, f"{per_request:.0f} page faults a request"
    else:
        assert "malloc left as MALLOC_TOP_PAD_ set it" in log
        assert per_request > 50, f"only {per_request:.0f} page faults a request with glibc's defaults"


def _read_response(conn: socket.socket, buffer: bytes) -> tuple[int, bytes, bytes]:
    """One HTTP/1.1 response (status, body) read from ``buffer`` then ``conn``; returns the rest."""
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed inside a response head: {buffer!r}"
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    length = int(fields.get(b"content-length", b"0"))
    while len(rest) < length:
        chunk = conn.recv(65536)
        assert chunk, "connection closed inside a response body"
        rest += chunk
    return status, rest[:length], rest[length:]


def test_raw_http_clients_get_whole_answers_pipelined_after_100_continue_and_before_close(
    repo: Path, tmp_path: Path
) -> None:
    """The server holds a connection's writes to the end of the loop's turn (``http.wire``): an
    interim ``100 Continue`` still reaches a client that waits for it before sending its body, two
    pipelined requests get both answers in order, and ``Connection: close`` gets its answer before
    the close."""
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, "raw", ["*"])
    row = json.dumps({"inputs": IRIS_ROWS[0].tolist()}).encode()
    post = (
        b"POST /v1/models/iris/predict HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + key.encode() + b"\r\n"
        b"content-type: application/json\r\ncontent-length: " + str(len(row)).encode() + b"\r\n"
    )
    with (
        serve(tmp_path, str(repo), "--keys", str(keys_file)) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn,
    ):
        conn.sendall(post + b"expect: 100-continue\r\n\r\n")
        status, _, rest = _read_response(conn, b"")
        assert status == 100  # sent although nothing else is written on this connection
        conn.sendall(row)
        status, body, rest = _read_response(conn, rest)
        assert status == 200
        assert json.loads(body)["prediction"] == "setosa"

        conn.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n" + post + b"\r\n" + row)
        first, _, rest = _read_response(conn, rest)
        second, body, rest = _read_response(conn, rest)
        assert (first, second, json.loads(body)["prediction"]) == (200, 200, "setosa")

        conn.sendall(post + b"connection: close\r\n\r\n" + row)
        status, body, rest = _read_response(conn, rest)
        assert status == 200
        assert json.loads(body)["prediction"] == "setosa"
        assert rest == b""
        assert conn.recv(65536) == b""  # then the server closed
