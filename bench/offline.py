"""``bundle predict`` rows/s against raw onnxruntime on the two benchmark models (bench/models.py).

    .venv/bin/python bench/offline.py [--rows 200000] [--rounds 3] [--root DIR]

Both sides score the same table on one core. Raw onnxruntime is the floor of the work: the model's
ONNX file in a plain ``InferenceSession`` (one intra-op thread), fed float32 arrays already in memory,
``--chunk-rows`` rows a call, outputs discarded. ``bundle predict`` is the whole command minus the
process start: read the Parquet file (or CSV) in chunks, the schema checks, the gateway's session,
the answers, and write the Parquet (or CSV) output with the input columns. The two take turns,
``--rounds`` times, and each figure is the median, per second of wall time and per CPU second of the
process (on a shared host the second moves less with the neighbours' load). The target is predict >= 0.8x raw on M2 (the
100-tree forest), Parquet in and out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway import pack_models, prepare_models


def tables(root: Path, name: str, rows: int) -> dict[str, Path]:
    """``rows`` rows of the model's training data (tiled) as Parquet and CSV, named f0..f{n-1}."""
    import pandas as pd

    train = np.load(root / "models" / f"{name}-train.npy")
    data = np.resize(train, (rows, train.shape[1]))
    frame = pd.DataFrame(data, columns=[f"f{i}" for i in range(train.shape[1])])
    out = {"parquet": root / f"{name}.parquet", "csv": root / f"{name}.csv"}
    frame.to_parquet(out["parquet"], index=False)
    frame.to_csv(out["csv"], index=False)
    return out


def raw_turn(model: Path, data: np.ndarray[Any, Any], chunk_rows: int) -> tuple[float, float]:
    """Rows per second and per CPU second of a plain onnxruntime session over ``data`` in chunks."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(data), chunk_rows):
        session.run(None, {name: data[start : start + chunk_rows]})
    return len(data) / (time.perf_counter() - started), len(data) / (time.process_time() - cpu)


def predict_turn(bundle: Path, source: Path, target: Path, chunk_rows: int) -> tuple[float, float]:
    """Rows per second and per CPU second of ``bundle predict`` (in this process) from ``source`` to
    ``target``; like the raw side, the session is made before the clock starts (``bundle predict``
    does it once a run)."""
    from bundlegate.offline import Scorer, predict_file

    scorer = Scorer.open(bundle)
    started, cpu = time.perf_counter(), time.process_time()
    report = predict_file(scorer, source, target, chunk_rows=chunk_rows)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    assert report.refused == 0, report
    return report.rows / seconds, report.rows / cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--root", type=Path, default=None, help="work dir (default: a new temporary one)")
    a = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})  # one core, like one worker
    root = a.root or Path(tempfile.mkdtemp(prefix="bundlegate-offline-bench-"))
    prepare_models(root)
    repo = pack_models(root, ["m1", "m2"])
    results: dict[str, Any] = {"rows": a.rows, "chunk_rows": a.chunk_rows, "rounds": a.rounds, "models": {}}
    for name in ("m1", "m2"):
        files = tables(root, name, a.rows)
        bundle = repo / name / "1"
        data = np.load(root / "models" / f"{name}-train.npy")
        data = np.resize(data, (a.rows, data.shape[1])).astype(np.float32)
        turns: dict[str, list[tuple[float, float]]] = {"raw": [], "parquet": [], "csv": []}
        predict_turn(bundle, files["parquet"], root / "out.parquet", a.chunk_rows)  # imports, caches
        for _ in range(a.rounds):
            turns["raw"].append(raw_turn(bundle / "model.onnx", data, a.chunk_rows))
            turns["parquet"].append(
                predict_turn(bundle, files["parquet"], root / "out.parquet", a.chunk_rows)
            )
            turns["csv"].append(predict_turn(bundle, files["csv"], root / "out.csv", a.chunk_rows))
        wall = {k: statistics.median(t[0] for t in v) for k, v in turns.items()}
        cpu = {k: statistics.median(t[1] for t in v) for k, v in turns.items()}
        results["models"][name] = {"turns": turns, "median_wall": wall, "median_cpu": cpu}
        for label, m in (("rows/s", wall), ("rows/CPU-s", cpu)):
            print(
                f"{name} {label}: raw onnxruntime {m['raw']:,.0f}; bundle predict parquet {m['parquet']:,.0f} "
                f"({m['parquet'] / m['raw']:.2f}x), csv {m['csv']:,.0f} ({m['csv'] / m['raw']:.2f}x)",
                flush=True,
            )
    (root / "offline-results.json").write_text(json.dumps(results, indent=1))
    print(f"raw results: {root / 'offline-results.json'}")


if __name__ == "__main__":
    main()
