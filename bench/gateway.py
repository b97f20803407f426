"""The gateway side of the benchmark: bundles, a key, the ``bundle serve`` command, request bodies.

Everything is written under the work dir (``BENCH_ROOT``), never into the repository:

    BENCH_ROOT/models/   m1.pkl, m2.pkl, training rows, samples.json      (bench/models.py)
    BENCH_ROOT/repo/     m1/1, m2/1                                       (bundle pack)
    BENCH_ROOT/keys.json one key for every model                          (bundle keys create)
    BENCH_ROOT/run/      request bodies;  BENCH_ROOT/logs/  server logs
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BATCH_ROWS = 1000


@dataclass
class ModelCase:
    """One model as the load steps see it: routes, request bodies and what a right answer is."""

    name: str
    single_path: str
    batch_path: str
    single_body: Path
    batch_body: Path
    batch_rows: int
    single_request: Any = None
    batch_request: Any = None
    expected: int | None = None  # the fixed row's class (sklearn), when known
    batch_expected: list[int] | None = None
    min_agreement: float = 0.999  # float32 ONNX may flip a borderline row
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # the same batch as FP32 binary tensor data to /v2 .../infer (tritonclient's default encoding)
    binary_path: str = ""
    binary_body: Path | None = None
    binary_header_length: int = 0


def bundle_cli() -> list[str]:
    """The ``bundle`` command of the interpreter running the bench (the project's .venv)."""
    return [sys.executable, "-m", "bundlegate.cli"]


def run_cli(args: list[str], timeout: float = 600) -> str:
    out = subprocess.run(
        bundle_cli() + args, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
    )
    if out.returncode:
        raise RuntimeError(
            f"bundle {' '.join(args[:2])} failed ({out.returncode}): {out.stderr.strip()[-800:]}"
        )
    return out.stdout


def prepare_models(root: Path) -> dict[str, Any]:
    """Train M1/M2 (bench/models.py recipe) into ``root/models``; returns the samples."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from models import write_models

    return write_models(root / "models")


def pack_models(root: Path, names: list[str]) -> Path:
    """``bundle pack`` each trained model into a fresh ``root/repo``; returns the repository path."""
    repo = root / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    for name in names:
        models = root / "models"
        run_cli(
            [
                "pack",
                str(models / f"{name}.pkl"),
                "--name",
                name,
                "--out",
                str(repo),
                "--sample",
                str(models / f"{name}-train.npy"),
                "--description",
                f"benchmark model {name} (bench/models.py)",
            ]
        )
    return repo


def create_key(root: Path) -> tuple[Path, str]:
    """A fresh keys file with one key for every model; returns (file, the key)."""
    keys = root / "keys.json"
    keys.unlink(missing_ok=True)
    key = run_cli(["keys", "create", "bench", "--models", "*", "--file", str(keys)]).strip().splitlines()[-1]
    return keys, key


def serve_command(repo: Path, port: int, keys: Path, extra: list[str]) -> list[str]:
    cmd = [*bundle_cli(), "serve", str(repo), "--host", "127.0.0.1", "--port", str(port)]
    return [*cmd, "--keys", str(keys), *extra]


def write_body(path: Path, body: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))
    return path


def write_binary_body(path: Path, rows: list[list[float]]) -> int:
    """An Open Inference Protocol infer body with binary tensor data: a JSON header naming one FP32
    ``[N, width]`` tensor, then its little-endian bytes. Returns the header's length (sent as
    ``Inference-Header-Content-Length``)."""
    import numpy as np

    data = np.asarray(rows, dtype="<f4").tobytes()
    tensor: dict[str, Any] = {"name": "input", "datatype": "FP32", "shape": [len(rows), len(rows[0])]}
    tensor["parameters"] = {"binary_data_size": len(data)}
    header = json.dumps({"inputs": [tensor]}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + data)
    return len(header)


def bench_cases(root: Path, samples: dict[str, Any], names: list[str]) -> list[ModelCase]:
    """M1/M2 as positional rows: one row to ``/predict``, 1000 rows to ``/predict/batch``, and the
    same 1000 rows as binary tensor data to ``/v2/models/{m}/infer``."""
    cases = []
    for name in names:
        s = samples[name]
        single = {"inputs": s["row"]}
        batch = {"inputs": s["batch"][:BATCH_ROWS]}
        binary = root / "run" / f"{name}-batch.bin"
        header_length = write_binary_body(binary, batch["inputs"])
        cases.append(
            ModelCase(
                name=name,
                single_path=f"/v1/models/{name}/predict",
                batch_path=f"/v1/models/{name}/predict/batch",
                single_body=write_body(root / "run" / f"{name}-single.json", single),
                batch_body=write_body(root / "run" / f"{name}-batch.json", batch),
                batch_rows=len(batch["inputs"]),
                single_request=single,
                batch_request=batch,
                expected=s["expected"],
                batch_expected=s["batch_expected"][:BATCH_ROWS],
                binary_path=f"/v2/models/{name}/infer",
                binary_body=binary,
                binary_header_length=header_length,
            )
        )
    return cases


def example_cases(root: Path, bundles: Path) -> list[ModelCase]:
    """Each example bundle's newest version, fed its own sample records (1 record; 1000 by repetition)."""
    cases = []
    for model_dir in sorted(p for p in bundles.iterdir() if p.is_dir()):
        versions = sorted((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        if not versions or not (versions[-1] / "bundle.json").exists():
            continue
        manifest = json.loads((versions[-1] / "bundle.json").read_text())
        sample_file = manifest.get("sample_file")
        if not sample_file:
            continue
        records = json.loads((versions[-1] / sample_file).read_text())
        if not records:
            continue
        name = manifest["name"]
        batch_records = (records * (BATCH_ROWS // len(records) + 1))[:BATCH_ROWS]
        single = {"inputs": records[0]}
        batch = {"inputs": batch_records}
        cases.append(
            ModelCase(
                name=name,
                single_path=f"/v1/models/{name}/predict",
                batch_path=f"/v1/models/{name}/predict/batch",
                single_body=write_body(root / "run" / f"example-{name}-single.json", single),
                batch_body=write_body(root / "run" / f"example-{name}-batch.json", batch),
                batch_rows=len(batch_records),
                single_request=single,
                batch_request=batch,
                note=f"{manifest.get('task', '?')}, {len(manifest.get('inputs', []))} features, "
                f"estimator {manifest.get('source', {}).get('estimator', '?').rsplit('.', 1)[-1]}",
            )
        )
    return cases
