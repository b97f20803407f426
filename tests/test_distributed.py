"""Scoring on a real dask ``distributed`` cluster (two worker processes on 127.0.0.1): the answers equal
``bundle predict``'s, and each worker opens the bundle once."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from bundlegate.cli import cli
from test_offline import EXAMPLES, table


def require_dask() -> None:
    missing = [m for m in ("dask", "distributed") if importlib.util.find_spec(m) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (pip install -e '.[distributed]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(message)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    require_dask()
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    )
    with cluster, Client(cluster) as c:
        yield c


@pytest.mark.slow
@pytest.mark.parametrize("name", ["iris", "diabetes-risk"])
def test_a_cluster_scores_like_bundle_predict(client: Any, tmp_path: Path, name: str) -> None:
    import dask.dataframe as dd

    from bundlegate.distributed import loaded_scorers, score_dataframe

    rows = table(name) * 50  # some bad rows in every partition
    frame = pd.DataFrame(rows)
    source = tmp_path / "in.parquet"
    frame.to_parquet(source, index=False)
    bundle = EXAMPLES / name / "1"
    target = tmp_path / "local.parquet"
    local = CliRunner().invoke(cli, ["predict", str(bundle), str(source), "-o", str(target)])
    assert local.exit_code == 0, local.output
    expected = pd.read_parquet(target)

    dd.from_pandas(frame, npartitions=6).to_parquet(tmp_path / "parts", write_index=False)
    table_on_cluster = dd.read_parquet(tmp_path / "parts")
    assert table_on_cluster.npartitions >= 4
    scored = score_dataframe(table_on_cluster, bundle).compute().reset_index(drop=True)

    assert list(scored["row_id"]) == list(expected["row_id"])
    assert scored["error"].notna().sum() == 2 * 50
    answers = [
        c for c in expected.columns if c == "prediction" or c.startswith("probability_") or c == "error"
    ]
    for column in answers:
        got, want = scored[column].astype(object), expected[column].astype(object)
        assert [None if pd.isna(v) else v for v in got] == [None if pd.isna(v) else v for v in want], column
    # both worker processes scored, each with its one session of the bundle
    opened = client.run(loaded_scorers)
    assert len(opened) == 2
    assert all(str(bundle) in bundles for bundles in opened.values())
