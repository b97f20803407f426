"""The operator's per-model serving settings: ``<repo>/<name>/serving.json`` (DESIGN.md §2, §5).

    {"default_version": 3, "batch_max_rows": 64, "batch_max_delay_ms": 2,
     "payload_sample_rate": 0.1, "payload_mask": ["ssn", "email"]}

Every key is optional. ``default_version`` pins the version ``/v1/models/{name}/predict`` serves (when
that version exists); the batching keys override the gateway's ``--batch-max-rows`` and
``--batch-max-delay-ms`` for this model; ``payload_sample_rate`` (0 to 1) overrides
``--payload-sample-rate`` and ``payload_mask`` names the inputs the payload log writes as ``"***"``.
A file that is not JSON, not an object, or holds a wrong or unknown key is reported in the model's
status (``error``) and the gateway's defaults apply to what it could not read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from bundlegate.errors import one_line

SERVING_FILE = "serving.json"
KEYS = ("batch_max_rows", "batch_max_delay_ms", "default_version", "payload_sample_rate", "payload_mask")


@dataclass(frozen=True, slots=True)
class ServingConfig:
    """What one model's ``serving.json`` says (None: not set), and what was wrong with it."""

    batch_max_rows: int | None = None
    batch_max_delay_ms: float | None = None
    default_version: int | None = None
    payload_sample_rate: float | None = None
    payload_mask: tuple[str, ...] | None = None
    error: str | None = None


def read_serving(model_dir: Path) -> ServingConfig:
    """The operator's ``serving.json`` for one model; problems are reported, defaults apply."""
    path = model_dir / SERVING_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return ServingConfig()
    except (OSError, ValueError) as exc:
        return ServingConfig(error=f"{SERVING_FILE}: {one_line(exc)}")
    if not isinstance(raw, dict):
        return ServingConfig(error=f"{SERVING_FILE}: expected a JSON object")
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key, integer, minimum in (
        ("batch_max_rows", True, 1),
        ("batch_max_delay_ms", False, 0),
        ("default_version", True, 1),
    ):
        value = raw.get(key)
        if value is None:
            continue
        kinds: tuple[type, ...] = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or cast(float, value) < minimum:
            problems.append(f"{key} must be {'an integer' if integer else 'a number'} >= {minimum}")
        else:
            values[key] = value
    rate = raw.get("payload_sample_rate")
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            problems.append("payload_sample_rate must be a number from 0 to 1")
        else:
            values["payload_sample_rate"] = float(rate)
    mask = raw.get("payload_mask")
    if mask is not None:
        if not isinstance(mask, list) or not all(isinstance(m, str) for m in mask):
            problems.append("payload_mask must be a list of input names")
        else:
            values["payload_mask"] = tuple(mask)
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        problems.append(f"unknown keys {[k[:40] for k in unknown][:5]}")
    return ServingConfig(**values, error=f"{SERVING_FILE}: " + "; ".join(problems) if problems else None)
