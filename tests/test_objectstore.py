"""Object-storage repositories against a real S3-compatible server (moto) on 127.0.0.1: ``bundle push``,
the mirror the registry serves, and ``bundle serve s3://...`` over a socket while versions arrive and
the store goes away."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import bundle_factory as bf
from bundlegate.bundle import read_bundle
from bundlegate.cli import cli
from bundlegate.keys import create_key
from bundlegate.objectstore import RepositoryMirror, open_store, push_bundle
from bundlegate.repository import scan_repository
from bundlegate.settings import Settings
from s3_server import SECRET, S3Server, running_s3

sys.path.append(str(Path(__file__).resolve().parent / "server"))
from test_serve_socket import serve  # bundle serve in a subprocess, as a user runs it

BUCKET = "models"
URL = f"s3://{BUCKET}/prod"


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    with running_s3(tmp_path) as server:
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        server.make_bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local repository: iris 1 and 2, and credit 1."""
    repo = tmp_path_factory.mktemp("local") / "bundles"
    repo.mkdir()
    iris = bf.iris_model()
    bf.write(repo, iris)
    bf.write(repo, bf.with_version(iris, 2))
    bf.write(repo, bf.mixed_model())
    return repo


def push(s3: S3Server, bundle: Path) -> str:
    return push_bundle(bundle, URL, endpoint_url=s3.endpoint)


def versions(path: Path) -> list[tuple[str, int]]:
    return [(r.name, r.version) for r in scan_repository(path)]


def test_push_then_the_mirror_follows_the_store(s3: S3Server, local: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["push", str(local / "iris" / "1"), URL, "--s3-endpoint-url", s3.endpoint],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"{URL}/iris/1" in result.output
    again = CliRunner().invoke(
        cli, ["push", str(local / "iris" / "1"), URL, "--s3-endpoint-url", s3.endpoint]
    )
    assert again.exit_code == 1
    assert "iris version 1 already exists" in again.output

    mirror = RepositoryMirror(URL, tmp_path / "cache", endpoint_url=s3.endpoint)
    report = mirror.sync()
    assert report.added == [("iris", 1)]
    assert versions(mirror.local) == [("iris", 1)]
    read_bundle(mirror.local / "iris" / "1", verify=True)  # the files' digests hold

    push(s3, local / "iris" / "2")
    push(s3, local / "credit" / "1")
    fs, root = open_store(URL, s3.endpoint)
    fs.pipe_file(f"{root}/iris/serving.json", b'{"default_version": 1}')
    assert sorted(mirror.sync().added) == [("credit", 1), ("iris", 2)]
    assert versions(mirror.local) == [("credit", 1), ("iris", 1), ("iris", 2)]
    assert json.loads((mirror.local / "iris" / "serving.json").read_text()) == {"default_version": 1}

    fs.rm(f"{root}/iris/1", recursive=True)
    fs.rm(f"{root}/iris/serving.json")
    assert mirror.sync().removed == [("iris", 1)]
    command = ["push", str(local / "iris" / "1"), URL, "--s3-endpoint-url", s3.endpoint, "--json"]
    pushed = CliRunner().invoke(cli, command, catch_exceptions=False)
    assert json.loads(pushed.stdout) == {"url": f"{URL}/iris/1"}  # pushed again after its removal
    assert versions(mirror.local) == [("credit", 1), ("iris", 2)]
    assert not (mirror.local / "iris" / "serving.json").exists()


def test_a_version_without_its_manifest_is_not_taken(s3: S3Server, local: Path, tmp_path: Path) -> None:
    fs, root = open_store(URL, s3.endpoint)
    fs.put_file(str(local / "iris" / "1" / "model.onnx"), f"{root}/iris/1/model.onnx")  # a push under way
    mirror = RepositoryMirror(URL, tmp_path / "cache", endpoint_url=s3.endpoint)
    assert mirror.sync().added == []
    assert versions(mirror.local) == []


def test_a_tampered_version_is_refused_until_its_manifest_changes(
    s3: S3Server, local: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fs, root = open_store(URL, s3.endpoint)
    source = local / "iris" / "1"
    for f in source.iterdir():
        fs.put_file(str(f), f"{root}/iris/1/{f.name}")
    fs.pipe_file(f"{root}/iris/1/model.onnx", b"not the model that was hashed")
    mirror = RepositoryMirror(URL, tmp_path / "cache", endpoint_url=s3.endpoint)
    with caplog.at_level(logging.ERROR, logger="bundlegate.objectstore"):
        assert mirror.sync().failed == [("iris", 1)]
        assert mirror.sync().failed == []  # not downloaded again while bundle.json is the same
    assert versions(mirror.local) == []
    assert len(caplog.records) == 1  # logged once
    message = caplog.records[0].getMessage()
    assert message.startswith(f"not serving iris version 1 from {URL}: ")
    assert "model.onnx does not match its size/sha256" in message
    assert list((mirror.local / "iris").iterdir()) == []  # no partial download left behind


def test_an_unreachable_store_leaves_the_mirror_as_it_is(
    s3: S3Server, local: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    push(s3, local / "iris" / "1")
    mirror = RepositoryMirror(URL, tmp_path / "cache", endpoint_url=s3.endpoint)
    mirror.sync()
    s3.stop()
    with caplog.at_level(logging.INFO, logger="bundlegate.objectstore"):
        report = mirror.sync()
    assert not report.reachable
    assert versions(mirror.local) == [("iris", 1)]
    assert "cannot be listed" in caplog.text
    assert "serving the 1 cached version(s)" in caplog.text
    assert SECRET not in caplog.text


def test_a_repository_url_in_the_environment_is_an_object_store() -> None:
    settings = Settings.from_env(
        {"BUNDLEGATE_REPOSITORY": URL, "BUNDLEGATE_S3_ENDPOINT_URL": "http://s3.test"}
    )
    assert settings.repository_url == URL
    assert settings.s3_endpoint_url == "http://s3.test"
    # bundle serve takes the URL as its argument or from BUNDLEGATE_REPOSITORY: no directory check
    # (the next refusal is the missing keys)
    for args, env in (([URL], {}), ([], {"BUNDLEGATE_REPOSITORY": URL})):
        result = CliRunner().invoke(cli, ["serve", *args], env=env)
        assert result.exit_code == 1
        assert "no API keys" in result.output
        assert "repository not found" not in result.output


def test_push_refuses_a_tampered_local_bundle(s3: S3Server, local: Path, tmp_path: Path) -> None:
    copy = tmp_path / "iris" / "1"
    copy.mkdir(parents=True)
    for f in (local / "iris" / "1").iterdir():
        copy.joinpath(f.name).write_bytes(f.read_bytes())
    copy.joinpath("model.onnx").write_bytes(b"changed")
    result = CliRunner().invoke(cli, ["push", str(copy), URL, "--s3-endpoint-url", s3.endpoint])
    assert result.exit_code == 1
    assert "does not match its size/sha256" in result.output
    fs, root = open_store(URL, s3.endpoint)
    assert fs.find(root) == []


@pytest.mark.socket
@pytest.mark.slow
def test_serve_from_s3_takes_a_pushed_version_under_load_and_survives_the_store_going_away(
    s3: S3Server, local: Path, tmp_path: Path
) -> None:
    push(s3, local / "iris" / "1")
    keys = tmp_path / "keys.json"
    key = create_key(keys, "app", ["*"])
    headers = {"Authorization": f"Bearer {key}"}
    args = [
        URL,
        "--s3-endpoint-url",
        s3.endpoint,
        "--cache-dir",
        str(tmp_path / "cache"),
        "--keys",
        str(keys),
    ]
    body = {"inputs": {"sepal_length": 6.1, "sepal_width": 2.8, "petal_length": 4.7, "petal_width": 1.2}}
    with serve(tmp_path, *args, "--reload-interval-s", "0.5", env=s3.env) as server:
        url = f"{server.url}/v1/models/iris/predict"
        seen: dict[str, int] = {}
        failures: list[str] = []
        stop = threading.Event()

        def load() -> None:  # steady requests, bounded in count and time
            deadline = time.monotonic() + 60
            with httpx.Client(headers=headers, timeout=10) as client:
                for _ in range(20_000):
                    if stop.is_set() or time.monotonic() > deadline:
                        return
                    try:
                        r = client.post(url, json=body)
                    except httpx.HTTPError as e:
                        failures.append(type(e).__name__)
                        continue
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                    else:
                        version = r.headers["X-Model-Version"]
                        seen[version] = seen.get(version, 0) + 1

        loaders = [threading.Thread(target=load) for _ in range(2)]
        for t in loaders:
            t.start()
        try:
            time.sleep(1.0)
            push(s3, local / "iris" / "2")
            deadline = time.monotonic() + 30
            while (
                seen.get("2", 0) < 50 and time.monotonic() < deadline and all(t.is_alive() for t in loaders)
            ):
                time.sleep(0.1)
        finally:
            stop.set()
            for t in loaders:
                t.join(timeout=30)
        print(f"answers by version while v2 was pushed: {seen}")
        assert failures == []
        assert seen.get("1", 0) > 0
        assert seen.get("2", 0) >= 50, seen  # the pushed version took over

        s3.stop()
        deadline = time.monotonic() + 30
        while "cannot be listed" not in server.stderr() and time.monotonic() < deadline:
            time.sleep(0.1)  # a poll of the store that is gone
        assert "cannot be listed" in server.stderr()
        time.sleep(1.0)  # and more polls
        with httpx.Client(headers=headers, timeout=10) as client:
            answers = [client.post(url, json=body) for _ in range(20)]
            assert [r.status_code for r in answers] == [200] * 20
            assert {r.headers["X-Model-Version"] for r in answers} == {"2"}
            assert client.get(f"{server.url}/readyz").status_code == 200
    log = server.stderr()
    assert "cannot be listed" in log
    assert SECRET not in log


def test_push_to_an_unreachable_store_is_one_error(local: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port
    result = CliRunner().invoke(cli, ["push", str(local / "iris" / "1"), URL, "--s3-endpoint-url", dead])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot reach {URL}")
    assert SECRET not in result.output


async def test_a_restart_while_the_store_is_down_serves_the_cache(
    s3: S3Server, local: Path, tmp_path: Path
) -> None:
    from prometheus_client import CollectorRegistry

    from bundlegate.http.app import create_app
    from bundlegate.metrics import GatewayMetrics

    push(s3, local / "iris" / "1")
    RepositoryMirror(URL, tmp_path / "cache", endpoint_url=s3.endpoint).sync()  # a first run filled it
    s3.stop()
    settings = Settings(
        repository_url=URL,
        s3_endpoint_url=s3.endpoint,
        cache_dir=tmp_path / "cache",
        insecure_no_auth=True,
        access_log=False,
    )
    app = create_app(settings, metrics=GatewayMetrics(CollectorRegistry()))
    await app.startup()
    await app.loaded()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
            r = await client.post("/v1/models/iris/predict", json={"inputs": row})
            assert r.status_code == 200, r.text
            assert r.json()["prediction"] == "setosa"
            assert (await client.get("/readyz")).status_code == 200
    finally:
        await app.shutdown()


def test_a_signed_version_keeps_its_signature_through_the_store(
    s3: S3Server, local: Path, tmp_path: Path
) -> None:
    from bundlegate.signing import create_signing_key, read_trusted_keys, sign_bundle

    signed = tmp_path / "signed" / "iris" / "1"
    signed.mkdir(parents=True)
    for f in (local / "iris" / "1").iterdir():
        signed.joinpath(f.name).write_bytes(f.read_bytes())
    trusted = tmp_path / "trusted.txt"
    trusted.write_text(create_signing_key(tmp_path / "signing.pem") + "\n")
    sign_bundle(signed, tmp_path / "signing.pem")
    push(s3, signed)
    mirror = RepositoryMirror(URL, tmp_path / "cache", endpoint_url=s3.endpoint)
    assert mirror.sync().added == [("iris", 1)]
    read_bundle(mirror.local / "iris" / "1", verify=True, trusted_keys=read_trusted_keys(trusted))
