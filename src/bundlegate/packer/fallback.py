"""The ``runtime: sklearn`` fallback, checked the way the gateway will serve it.

``served_parity`` builds the bundle's manifest, loads the pickle with the gateway's own ``SklearnModel``
(the same version checks, the same DataFrame/text/array input), feeds it the check rows as JSON
records through the gateway's ``CompiledSchema``, and compares the answers with the original's. A
fallback the gateway could not load, or that would answer differently, is refused with the reason, so
``bundle pack`` never writes a bundle that cannot serve.

``libraries`` names the distributions other than scikit-learn and NumPy whose classes the pickle holds
(pandas always: the gateway builds DataFrames with it), with their exact installed versions.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Literal

from bundlegate.errors import BundleError, ConversionFailed, ParityFailed
from bundlegate.manifest import Manifest, Parity
from bundlegate.packer import reference
from bundlegate.packer.parity import Predictions, compare
from bundlegate.packer.schema_inference import ModelSchema

if TYPE_CHECKING:
    import pandas as pd

DISTRIBUTIONS = {"xgboost": "xgboost", "lightgbm": "lightgbm", "pandas": "pandas", "scipy": "scipy"}


def libraries(est: Any) -> dict[str, str]:
    """Distribution → installed version for the libraries ``est``'s classes come from, and pandas."""
    roots = {"pandas"}
    for part in _parts(est):
        roots.add(type(part).__module__.split(".", 1)[0])
    found = {}
    for root in sorted(roots):
        dist = DISTRIBUTIONS.get(root)
        if dist is None:
            continue
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return found


def served_parity(
    manifest: Manifest,
    model_bytes: bytes,
    schema: ModelSchema,
    frame: pd.DataFrame,
    original: Predictions,
    sample: Literal["provided", "synthesized"],
    why_not_onnx: str,
) -> Parity:
    """Parity of the fallback as served; ``ConversionFailed``/``ParityFailed`` when it cannot serve."""
    import numpy as np

    from bundlegate.schema import CompiledSchema
    from bundlegate.sklearn_model import SklearnModel

    try:
        model = SklearnModel(manifest, model_bytes)
        decoded = CompiledSchema(manifest)
        records = json.loads(json.dumps(reference.stored_rows(schema, frame, len(frame))))
        step = max(1, decoded.max_rows)
        parts = [
            model.predict(decoded.from_records(records[i : i + step])) for i in range(0, len(records), step)
        ]
    except (BundleError, ValueError, TypeError) as exc:
        raise ConversionFailed(
            f"{why_not_onnx}; and the gateway could not serve it as runtime: sklearn either: {_short(exc)}"
        ) from None

    def joined(name: str) -> Any:
        arrays = [getattr(p, name) for p in parts]
        return None if arrays[0] is None else np.concatenate([np.asarray(a) for a in arrays])

    values = joined("values")
    served = Predictions(
        labels=joined("labels"),
        probabilities=None if joined("probabilities") is None else joined("probabilities").astype(np.float64),
        values=None if values is None else values.astype(np.float64).reshape(len(frame), -1),
    )
    parity = compare(schema, original, served, sample)
    if not parity.passed:
        raise ParityFailed(
            f"{why_not_onnx}; and the runtime: sklearn bundle, served by the gateway, answers differently "
            f"from the original ({parity.reason})"
        )
    return parity.model_copy(update={"reason": why_not_onnx})


def _parts(est: Any) -> list[Any]:
    from bundlegate.packer.conversion import _fitted_parts

    return _fitted_parts(est)


def _short(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "…"
