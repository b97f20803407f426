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

from bundlegate.errors import BundlegateError, ConversionFailed, ParityFailed, shorten
from bundlegate.manifest import Manifest, Parity
from bundlegate.packer import reference
from bundlegate.packer.parity import compare
from bundlegate.packer.predictions import Predictions
from bundlegate.packer.schema_inference import ModelSchema

if TYPE_CHECKING:
    import pandas as pd

_LONGEST_STRING = 2**24  # the string limit is the operator's setting, not the packer's
DISTRIBUTIONS = {
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "catboost": "catboost",
    "pandas": "pandas",
    "scipy": "scipy",
}


def libraries(est: Any) -> dict[str, str]:
    """Distribution → installed version for the libraries ``est``'s objects come from, and pandas."""
    roots = {"pandas"} | _module_roots(est)
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


def _module_roots(est: Any, limit: int = 20_000) -> set[str]:
    """The top-level packages of the objects reachable from ``est`` (fitted sub-estimators of a
    calibrated or stacked model too), through attributes, lists, tuples and dicts; arrays are leaves."""
    import numpy as np

    roots: set[str] = set()
    seen: set[int] = set()
    todo: list[Any] = [est]
    while todo and len(seen) < limit:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, str | bytes | int | float | np.ndarray | np.generic):
            continue
        seen.add(id(obj))
        roots.add(type(obj).__module__.split(".", 1)[0])
        if isinstance(obj, dict):
            todo.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            todo.extend(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            todo.extend(vars(obj).values())
    return roots


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

    from bundlegate.decoding import CompiledSchema
    from bundlegate.sklearn_model import SklearnModel

    n = len(frame)
    try:
        model = SklearnModel(manifest, model_bytes)
        records = json.loads(json.dumps(reference.stored_rows(schema, frame, n)))
        decoder = CompiledSchema(manifest, max_rows=max(1, n), max_string_length=_LONGEST_STRING)
        prediction = model.predict(decoder.from_records(records))
    except (BundlegateError, ValueError, TypeError) as exc:
        raise ConversionFailed(
            f"{why_not_onnx}; and the gateway could not serve it as runtime: sklearn either: "
            f"{shorten(str(exc), 240)}"
        ) from None
    proba, values = prediction.probabilities, prediction.values
    served = Predictions(
        labels=None if prediction.labels is None else np.asarray(prediction.labels).reshape(n),
        probabilities=None if proba is None else np.asarray(proba, dtype=np.float64),
        values=None if values is None else np.asarray(values, dtype=np.float64).reshape(n, -1),
    )
    parity = compare(schema, original, served, sample)
    if not parity.passed:
        raise ParityFailed(
            f"{why_not_onnx}; and the runtime: sklearn bundle, served by the gateway, answers differently "
            f"from the original ({parity.reason})"
        )
    return parity.model_copy(update={"reason": why_not_onnx})
