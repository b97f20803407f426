"""A real S3-compatible server for tests: moto's server mode on 127.0.0.1 and a free port.

    with running_s3() as s3:                  # skips when moto is missing, except under CI=true
        s3.env                                # AWS_* variables a client needs (fake credentials)
        s3.endpoint                           # http://127.0.0.1:<port>
        s3.make_bucket("models")
        s3.stop()                             # the store goes away (the test's outage)

The credentials are fake but distinctive (``SECRET``), so a test can check that they never reach a
log line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ports import free_port

SECRET = "bg-test-secret-d41d8cd98f00b204e9800998ecf8427e"
KEY_ID = "bgtestkeyid"
STARTUP_TIMEOUT_S = 30.0


def require_moto() -> None:
    """Skip the calling test when moto's server or s3fs is missing, except in CI (a failure there)."""
    missing = [m for m in ("moto", "flask", "s3fs") if importlib.util.find_spec(m) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (pip install -e '.[test,s3]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(message)


@dataclass
class S3Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def make_bucket(self, name: str) -> None:
        response = httpx.put(f"{self.endpoint}/{name}", timeout=10)
        assert response.status_code == 200, response.text

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextlib.contextmanager
def running_s3(tmp_path: Path) -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 until the block ends (see the module docstring)."""
    require_moto()
    port = free_port()
    log = tmp_path / f"moto-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = S3Server(process, port, log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"moto server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(server.endpoint + "/moto-api/", timeout=1).status_code < 500:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"moto server not up after {STARTUP_TIMEOUT_S}s:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()
