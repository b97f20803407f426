"""Scoring a table that does not fit one machine: a dask dataframe, partition by partition, on a
``distributed`` cluster, each worker process holding one ``Scorer`` (one onnxruntime session).

    import dask.dataframe as dd
    from distributed import Client
    from bundlegate.distributed import score_dataframe

    client = Client("tcp://scheduler:8786")
    table = dd.read_parquet("s3://data/in/")
    scored = score_dataframe(table, "/models/credit/3")     # lazy: the input columns, then the answers
    scored.to_parquet("s3://data/out/")

The bundle directory must be readable at the same path on every worker (a shared volume, or the same
path in each image). ``score_dataframe`` opens it once where it is called, to check it and learn the
answer columns; each worker process opens it once more (digests verified) and keeps it for every
partition it scores. Each partition goes through ``Scorer.score``, the code of ``bundle predict``, so
the answers are its answers. A refused row gets its problems in ``error``; with ``fail_fast`` the
first one fails the computation. CSV read as text (``dd.read_csv(..., dtype=str)``) wants
``from_text=True``, as ``bundle predict`` does for CSV files.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bundlegate.offline import Scorer

if TYPE_CHECKING:
    import pandas as pd

_scorers: dict[tuple[str, bool], Scorer] = {}
_lock = threading.Lock()


def score_dataframe(
    frame: Any,
    bundle: str | Path,
    *,
    keep_inputs: bool = True,
    from_text: bool = False,
    fail_fast: bool = False,
) -> Any:
    """``frame`` (a ``dask.dataframe.DataFrame``) with the bundle's answers, computed lazily on the
    cluster: ``frame``'s columns (``keep_inputs``), then ``Scorer.output_columns``."""
    scorer = Scorer.open(Path(bundle))
    clash = [c for c in scorer.output_columns if c in frame.columns] if keep_inputs else []
    if clash:
        raise ValueError(f"the table already has a column named {clash[0]!r}; rename it first")
    meta = answer_meta(scorer)
    if keep_inputs:
        meta = frame._meta.join(meta)
    return frame.map_partitions(
        score_partition, str(bundle), from_text, fail_fast, keep_inputs, meta=meta, align_dataframes=False
    )


def score_partition(
    frame: pd.DataFrame, bundle: str, from_text: bool, fail_fast: bool, keep_inputs: bool
) -> pd.DataFrame:
    """One partition scored by this process's ``Scorer`` of ``bundle`` (opened on first use)."""
    scorer = worker_scorer(bundle, fail_fast)
    result = scorer.score(frame, from_text=from_text).astype(answer_meta(scorer).dtypes.to_dict())
    return frame.join(result) if keep_inputs else result


def worker_scorer(bundle: str, fail_fast: bool = False) -> Scorer:
    """This process's ``Scorer`` of ``bundle``: one onnxruntime session per worker process."""
    key = (bundle, fail_fast)
    with _lock:
        scorer = _scorers.get(key)
        if scorer is None:
            scorer = _scorers[key] = Scorer.open(Path(bundle), fail_fast=fail_fast)
        return scorer


def loaded_scorers() -> list[str]:
    """The bundles this process has opened (run on every worker: ``client.run(loaded_scorers)``)."""
    with _lock:
        return sorted({bundle for bundle, _ in _scorers})


def answer_meta(scorer: Scorer) -> pd.DataFrame:
    """An empty frame with the answer columns and the dtypes every partition is given: answers of
    refused rows are missing, so labels take pandas' nullable dtypes."""
    import pandas as pd

    nullable = {"int64": "Int64", "bool": "boolean", "float32": "float32", "string": "object"}
    dtypes = {name: nullable[kind] for name, kind in scorer.output_types.items()}
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in dtypes.items()})
