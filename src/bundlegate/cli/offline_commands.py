"""``bundle predict`` (score a table file offline) and ``bundle push`` (upload a version to object storage).

pandas and pyarrow (the ``offline`` extra) and fsspec/s3fs (the ``s3`` extra) are imported inside the
commands, so the rest of the CLI starts without them; a missing extra is a one-line error naming it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from bundlegate.errors import BundleError
from bundlegate.tables import FORMATS


def register(group: click.Group) -> None:
    """Add this module's commands to the `bundle` group."""
    group.add_command(predict)
    group.add_command(push)


def _require(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise BundleError(f"this command needs {module}: pip install 'bundlegate[{extra}]'")


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("source", metavar="INPUT", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "-o", "--output", "target", required=True, type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the answers (.csv, .parquet or .jsonl).",
)  # fmt: skip
@click.option("--input-format", type=click.Choice(FORMATS), help="Format of INPUT (default: its suffix).")
@click.option("--output-format", type=click.Choice(FORMATS), help="Format of the output (default: suffix).")
@click.option(
    "--chunk-rows", type=click.IntRange(1, 10_000_000), default=50_000, show_default=True,
    help="Rows read, checked and scored at a time.",
)  # fmt: skip
@click.option("--fail-fast", is_flag=True, help="Stop at the first row the schema refuses (exit 1).")
@click.option(
    "--inputs/--no-inputs", "keep_inputs", default=True, show_default=True,
    help="Copy the input columns into the output before the answers.",
)  # fmt: skip
@click.option(
    "--ort-threads", type=click.IntRange(0, 1024), default=1, show_default=True,
    envvar="BUNDLEGATE_ORT_THREADS", help="onnxruntime intra-op threads (BUNDLEGATE_ORT_THREADS).",
)  # fmt: skip
@click.option("--allow-pickle", is_flag=True, help="Load a runtime: sklearn bundle (a pickle).")
@click.option("--progress/--no-progress", default=True, help="A progress bar on stderr (terminals only).")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
def predict(
    bundle: Path,
    source: Path,
    target: Path,
    input_format: str | None,
    output_format: str | None,
    chunk_rows: int,
    fail_fast: bool,
    keep_inputs: bool,
    ort_threads: int,
    allow_pickle: bool,
    progress: bool,
    as_json: bool,
) -> None:
    """Score the table INPUT with the bundle version BUNDLE (a <name>/<version> directory).

    Every row goes through the gateway's schema checks and onnxruntime session and gets the gateway's
    answer: a prediction, one probability_<class> column per class (classifiers), and an error column
    that says why a row was refused (its outputs are then empty) unless --fail-fast stops the run.
    """
    _require("pandas", "offline")
    _require("pyarrow", "offline")
    from bundlegate.offline import Scorer, predict_file

    scorer = Scorer.open(bundle, ort_threads=ort_threads, allow_pickle=allow_pickle, fail_fast=fail_fast)
    bar: Any = None

    def advance(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=max(total, 1), label=f"scoring {source.name}", file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        report = predict_file(
            scorer,
            source,
            target,
            source_format=input_format,
            target_format=output_format,
            chunk_rows=chunk_rows,
            keep_inputs=keep_inputs,
            progress=advance if progress else None,
        )
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if as_json:
        counts = {"rows": report.rows, "scored": report.scored, "refused": report.refused}
        click.echo(json.dumps(counts | {"output": str(target)}))
        return
    refused = f", {report.refused} refused (see the error column)" if report.refused else ""
    click.echo(f"bundle predict: {report.scored} of {report.rows} rows scored{refused} -> {target}", err=True)


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("url")
@click.option(
    "--s3-endpoint-url", envvar="BUNDLEGATE_S3_ENDPOINT_URL", default=None,
    help="An S3-compatible endpoint instead of AWS (BUNDLEGATE_S3_ENDPOINT_URL).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the version's URL as one JSON object.")
def push(bundle: Path, url: str, s3_endpoint_url: str | None, as_json: bool) -> None:
    """Upload the bundle version BUNDLE to the object-storage repository URL (s3://bucket/prefix).

    The files go first and bundle.json last, so a gateway serving URL never sees a partial version.
    Credentials come from the usual AWS environment variables and files.
    """
    _require("fsspec", "s3")
    from bundlegate.objectstore import push_bundle

    where = push_bundle(bundle, url, endpoint_url=s3_endpoint_url)
    if as_json:
        click.echo(json.dumps({"url": where}))
    else:
        click.echo(f"bundle push: {where}", err=True)
