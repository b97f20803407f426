"""``bundle predict``: the example bundles score CSV, Parquet and JSON lines files with the gateway's
answers, byte for byte, and refuse the rows the gateway refuses."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from bundlegate.cli import cli
from bundlegate.http.app import Gateway, create_app
from bundlegate.keys import create_key
from bundlegate.metrics import GatewayMetrics
from bundlegate.offline import Scorer
from bundlegate.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[1] / "bundles"
MODELS = ["iris", "diabetes", "diabetes-risk"]


def sample_rows(name: str) -> list[dict[str, Any]]:
    return list(json.loads((EXAMPLES / name / "1" / "sample.json").read_text()))


def bad_rows(name: str) -> list[tuple[int, dict[str, Any]]]:
    """(position in the table, row) of rows the gateway refuses, in every format's types."""
    good = sample_rows(name)
    if name == "diabetes-risk":  # every feature nullable: a string that is too long
        return [(1, {**good[0], "age_band": "x" * 2000}), (4, {**good[1], "sex": "y" * 1500})]
    first = next(iter(good[0]))
    return [(1, {**good[0], first: None}), (4, {**good[1], first: None})]


def table(name: str) -> list[dict[str, Any]]:
    rows = [{"row_id": f"r{i}", **r} for i, r in enumerate(sample_rows(name))]
    for at, row in bad_rows(name):
        rows.insert(at, {"row_id": f"bad{at}", **row})
    return rows


def write_table(rows: list[dict[str, Any]], path: Path) -> Path:
    frame = pd.DataFrame(rows)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return path


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["predict", *args, "--no-progress"], catch_exceptions=False)


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    return path, create_key(path, "batch", ["*"])


@pytest.fixture
async def gateway(keys_file: tuple[Path, str]) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(repository=EXAMPLES, keys_file=keys_file[0], access_log=False)
    app: Gateway = create_app(settings, metrics=GatewayMetrics(CollectorRegistry()))
    await app.startup()
    await app.loaded()
    headers = {"Authorization": f"Bearer {keys_file[1]}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test", headers=headers) as client:
        yield client
    await app.shutdown()


def answers_json(rows: list[dict[str, Any]], classes: list[str]) -> bytes:
    """The ``predictions``/``probabilities`` members of a /v1 batch answer built from output rows."""
    body: dict[str, Any] = {"predictions": [r["prediction"] for r in rows]}
    if classes:
        body["probabilities"] = [[r[f"probability_{c}"] for c in classes] for r in rows]
    return orjson.dumps(body)[1:-1]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
@pytest.mark.parametrize("name", MODELS)
async def test_predict_answers_like_the_gateway(
    gateway: httpx.AsyncClient, tmp_path: Path, name: str, fmt: str
) -> None:
    rows = table(name)
    source = write_table(rows, tmp_path / f"in.{fmt}")
    result = run(
        str(EXAMPLES / name / "1"), str(source), "-o", str(tmp_path / "out.jsonl"), "--chunk-rows", "3"
    )
    assert result.exit_code == 0, result.output
    assert f"{len(rows) - 2} of {len(rows)} rows scored, 2 refused" in result.output
    out = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert [r["row_id"] for r in out] == [r["row_id"] for r in rows]
    classes = [k.removeprefix("probability_") for k in out[0] if k.startswith("probability_")]

    good = sample_rows(name)
    columns = {k: [r[k] for r in good] for k in good[0]}
    answer = await gateway.post(f"/v1/models/{name}/predict/batch", json={"inputs": columns})
    assert answer.status_code == 200
    scored = [r for r in out if r["error"] is None]
    assert len(scored) == len(good)
    assert answers_json(scored, classes) in answer.content  # the same bytes as the gateway's answer

    refused = {r["row_id"]: r for r in out if r["error"] is not None}
    for at, row in bad_rows(name):
        line = refused[f"bad{at}"]
        assert line["prediction"] is None
        alone = await gateway.post(f"/v1/models/{name}/predict", json={"inputs": row})
        assert alone.status_code == 422
        for detail in alone.json()["error"]["details"]:
            assert f"{detail['loc'][-1]}: {detail['msg']}" in line["error"]


async def test_csv_cells_hold_the_gateways_numbers(gateway: httpx.AsyncClient, tmp_path: Path) -> None:
    source = write_table(table("diabetes"), tmp_path / "in.csv")
    assert run(str(EXAMPLES / "diabetes" / "1"), str(source), "-o", str(tmp_path / "out.csv")).exit_code == 0
    with open(tmp_path / "out.csv", newline="") as f:
        cells = [r["prediction"] for r in csv.DictReader(f) if not r["error"]]
    good = sample_rows("diabetes")
    answer = await gateway.post("/v1/models/diabetes/predict/batch", json={"inputs": good})
    assert answers_json([{"prediction": json.loads(c)} for c in cells], []) in answer.content
    assert b"[" + ",".join(cells).encode() + b"]" in answer.content


def test_parquet_output_is_typed(tmp_path: Path) -> None:
    source = write_table(table("iris"), tmp_path / "in.csv")
    result = run(str(EXAMPLES / "iris" / "1"), str(source), "-o", str(tmp_path / "out.parquet"), "--json")
    assert result.exit_code == 0
    counts = json.loads(result.stdout)
    rows = len(table("iris"))
    assert counts == {"rows": rows, "scored": rows - 2, "refused": 2, "output": str(tmp_path / "out.parquet")}
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert str(out["probability_setosa"].dtype) == "float32"
    assert out["prediction"].isna().sum() == 2
    assert out["error"].notna().sum() == 2
    assert set(out["prediction"].dropna()) <= {"setosa", "versicolor", "virginica"}


def test_csv_text_that_is_not_a_number_is_refused_like_json_text(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\nabc,3.0,5.2,2.3\n6.7,,5.2,2.3\n"
    )
    assert run(str(EXAMPLES / "iris" / "1"), str(source), "-o", str(tmp_path / "out.csv")).exit_code == 0
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(out["error"]) == [
        "",
        "sepal_length: expected a number, got a string",
        "sepal_width: null is not allowed for this feature",
    ]
    assert out["prediction"][0] == "setosa"


def test_fail_fast_stops_at_the_first_bad_row_and_writes_nothing(tmp_path: Path) -> None:
    source = write_table(table("iris"), tmp_path / "in.parquet")
    target = tmp_path / "out.parquet"
    result = run(
        str(EXAMPLES / "iris" / "1"), str(source), "-o", str(target), "--fail-fast", "--chunk-rows", "1"
    )
    assert result.exit_code == 1
    assert "row 1 does not match the model's schema" in result.output  # 0-based: the second row
    assert "sepal_length: null is not allowed" in result.output
    assert not target.exists()
    assert list(tmp_path.iterdir()) == [source]  # no partial file left behind


def test_a_missing_feature_column_fails_the_run(tmp_path: Path) -> None:
    source = write_table(
        [{k: v for k, v in r.items() if k != "petal_width"} for r in table("iris")], tmp_path / "in.csv"
    )
    result = run(str(EXAMPLES / "iris" / "1"), str(source), "-o", str(tmp_path / "out.csv"))
    assert result.exit_code == 1
    assert "no column for the feature(s) petal_width" in result.output


def test_an_input_column_named_like_an_answer_is_refused(tmp_path: Path) -> None:
    rows = [{**r, "prediction": 1} for r in sample_rows("iris")]
    source = write_table(rows, tmp_path / "in.jsonl")
    result = run(str(EXAMPLES / "iris" / "1"), str(source), "-o", str(tmp_path / "out.jsonl"))
    assert result.exit_code == 1
    assert "already has a column named 'prediction'" in result.output
    assert (
        run(
            str(EXAMPLES / "iris" / "1"), str(source), "-o", str(tmp_path / "o.jsonl"), "--no-inputs"
        ).exit_code
        == 0
    )


def test_malformed_json_lines_are_refused_rows(tmp_path: Path) -> None:
    good = sample_rows("iris")[:2]
    source = tmp_path / "in.jsonl"
    source.write_bytes(orjson.dumps(good[0]) + b"\n{not json\n[1, 2]\n" + orjson.dumps(good[1]) + b"\n")
    assert run(str(EXAMPLES / "iris" / "1"), str(source), "-o", str(tmp_path / "out.jsonl")).exit_code == 0
    errors = [orjson.loads(line)["error"] for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert errors == [None, "the line is not valid JSON", "the line is not a JSON object", None]


def test_unknown_table_format_is_a_usage_error(tmp_path: Path) -> None:
    source = write_table(sample_rows("iris"), tmp_path / "in.csv")
    result = run(str(EXAMPLES / "iris" / "1"), str(source), "-o", str(tmp_path / "out.xlsx"))
    assert result.exit_code == 1
    assert "cannot tell the format" in result.output


def test_scorer_scores_a_frame_in_place(tmp_path: Path) -> None:
    scorer = Scorer.open(EXAMPLES / "iris" / "1")
    frame = pd.DataFrame(sample_rows("iris"), index=range(100, 100 + len(sample_rows("iris"))))
    result = scorer.score(frame)
    assert list(result.index) == list(frame.index)
    assert list(result.columns) == scorer.output_columns
    assert result["error"].isna().all()


def test_csv_cells_pass_through_as_written_and_nan_text_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        "id,sepal_length,sepal_width,petal_length,petal_width\n"
        '007,5.1,3.5,1.4,0.2\n"0,8",6.7,3.0,5.2,2.3\n009,nan,3.0,5.2,2.3\n'
    )
    assert run(str(EXAMPLES / "iris" / "1"), str(source), "-o", str(tmp_path / "out.csv")).exit_code == 0
    with open(tmp_path / "out.csv", newline="") as f:
        out = list(csv.DictReader(f))
    assert [r["id"] for r in out] == ["007", "0,8", "009"]  # text kept, quoting round-trips
    assert [r["prediction"] for r in out] == ["setosa", "virginica", ""]
    assert out[2]["error"] == "sepal_length: expected a number, got a string"


def test_a_csv_row_with_too_many_cells_fails_the_run(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n1,2,3,4,5\n")
    result = run(str(EXAMPLES / "iris" / "1"), str(source), "-o", str(tmp_path / "out.csv"))
    assert result.exit_code == 1
    assert "cannot read the CSV table" in result.output
    assert not (tmp_path / "out.csv").exists()
