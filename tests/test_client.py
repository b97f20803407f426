"""``bundlegate.client`` against a real gateway (``bundle serve`` on 127.0.0.1): answers equal the
original sklearn models, DataFrames with gaps, pinning, typed errors, retries on 429 honouring
Retry-After, and timeouts against a socket that never answers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import bundle_factory as bf
from bundlegate import client as bc
from bundlegate.keys import create_key
from server.test_serve_socket import Server, serve

pytestmark = [pytest.mark.socket, pytest.mark.slow]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    root = tmp_path_factory.mktemp("client")
    repo = root / "bundles"
    repo.mkdir()
    iris = bf.iris_model()
    bf.write(repo, iris)
    bf.write(repo, bf.with_version(iris, 2))
    bf.write(repo, bf.mixed_model())
    keys = root / "keys.json"
    key = create_key(keys, "client-test", ["iris", "credit"])
    with serve(root, str(repo), "--keys", str(keys), "--no-access-log") as server:
        yield server, key


def test_predict_one_and_many_equal_sklearn(gateway: tuple[Server, str]) -> None:
    server, key = gateway
    clf = bf.iris_model().estimator
    rows = bf.iris_model().X[::30]
    with bc.Client(server.url, key) as gw:
        one = gw.predict("iris", dict(zip(bf.IRIS_FEATURES, rows[0].tolist(), strict=True)))
        assert one.prediction == clf.predict(rows[:1])[0]
        assert one.classes == list(clf.classes_)
        assert list(one.probabilities or {}) == list(clf.classes_)
        many = gw.predict_many("iris", rows.tolist())
        assert many.predictions == clf.predict(rows).tolist()
        assert many.classes == list(clf.classes_)
        records = many.probability_records()
        assert records[0] == pytest.approx(one.probabilities, abs=1e-6)
        assert np.allclose(many.probabilities or [], clf.predict_proba(rows), atol=1e-5)


def test_a_dataframe_with_gaps_answers_like_sklearn(gateway: tuple[Server, str]) -> None:
    server, key = gateway
    mixed = bf.mixed_model()
    frame = mixed.X.iloc[:20]
    assert frame.isna().any().any()  # the gaps are sent as null
    with bc.Client(server.url, key) as gw:
        answer = gw.predict_many("credit", frame)
    assert answer.predictions == mixed.estimator.predict(frame).tolist()


def test_version_pinning(gateway: tuple[Server, str]) -> None:
    server, key = gateway
    row = bf.iris_model().X[0].tolist()
    with bc.Client(server.url, key) as gw:
        assert gw.predict("iris", row).version == 2
        assert gw.predict("iris", row, version=1).version == 1
    with bc.Client(server.url, key, version=1) as pinned:
        assert pinned.predict_many("iris", [row]).version == 1
        with pytest.raises(ValueError, match="not both"):
            pinned.predict("iris", row, version=1, alias="champion")


def test_errors_are_typed(gateway: tuple[Server, str]) -> None:
    server, key = gateway
    with bc.Client(server.url, key) as gw:
        with pytest.raises(bc.InvalidInput) as bad:
            gw.predict("iris", {"sepal_length": "long"})
        assert bad.value.status == 422
        assert bad.value.details
        assert bad.value.request_id
        with pytest.raises(bc.NotFound):
            gw.predict("price", [1.0, 2.0, 3])  # exists in no repository this key sees
        with pytest.raises(bc.NotFound):
            gw.predict("iris", [1.0, 2.0, 3.0, 4.0], version=9)
    with bc.Client(server.url, "bg_wrong") as wrong, pytest.raises(bc.Unauthenticated):
        wrong.models()


def test_rate_limited_requests_are_retried_after_retry_after(tmp_path: Path) -> None:
    repo = tmp_path / "bundles"
    repo.mkdir()
    bf.write(repo, bf.iris_model())
    keys = tmp_path / "keys.json"
    key = create_key(keys, "limited", ["*"])
    row = bf.iris_model().X[0].tolist()
    with serve(
        tmp_path, str(repo), "--keys", str(keys), "--rate-limit-rps", "1", "--no-access-log"
    ) as server:
        with bc.Client(server.url, key, retries=0) as once:
            once.predict("iris", row)
            with pytest.raises(bc.RateLimited) as limited:
                once.predict("iris", row)
            assert limited.value.retry_after == 1
        with bc.Client(server.url, key, retries=3) as patient:
            for _ in range(3):  # each call past the first waits out Retry-After, then succeeds
                assert patient.predict("iris", row).model == "iris"


def test_timeout_and_unreachable_gateway() -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with bc.Client(url, "bg_x", timeout=0.3, retries=0) as gw, pytest.raises(bc.Timeout):
            gw.predict("iris", [1.0, 2.0, 3.0, 4.0])
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with (
        bc.Client(f"http://127.0.0.1:{port}", "bg_x", retries=1, backoff=0.01) as gw,
        pytest.raises(bc.ConnectionFailed),
    ):
        gw.models()


async def test_async_client(gateway: tuple[Server, str]) -> None:
    server, key = gateway
    clf = bf.iris_model().estimator
    rows = bf.iris_model().X[::50]
    async with bc.AsyncClient(server.url, key) as gw:
        many = await gw.predict_many("iris", {f: rows[:, i].tolist() for i, f in enumerate(bf.IRIS_FEATURES)})
        assert many.predictions == clf.predict(rows).tolist()
        assert (await gw.predict("iris", rows[0].tolist(), version=1)).version == 1
        assert {m["name"] for m in await gw.models()} == {"iris", "credit"}
        schema = (await gw.model("iris"))["schema"]
        assert [i["name"] for i in schema["inputs"]] == list(bf.IRIS_FEATURES)
        with pytest.raises(bc.NotFound):
            await gw.model("nothing-here")
        with pytest.raises(bc.InvalidInput):
            await gw.predict_many("iris", [])
