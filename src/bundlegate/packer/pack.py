"""``pack_bundle``: model file + sample → a new bundle version (DESIGN.md §2).

Steps: load the model, read the sample (or synthesize rows), infer the schema, convert with skl2onnx in
float32, check parity, and if it fails convert in float64 and check again. A bundle whose parity fails
is never written as ONNX: with ``allow_pickle_fallback`` it is written as ``runtime: sklearn``
(``model.joblib`` and the exact versions), otherwise ``ParityFailed``/``ConversionFailed`` names the
estimator and why. The bundle also stores reference statistics, ``sample.json`` (20 rows) and
``expected.json`` (the original model's answers for them). The name and version are checked before
any heavy work, and the version directory appears only when complete (``bundle.write_bundle``).
"""

from __future__ import annotations

import io
import platform
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from bundlegate.bundle import read_bundle, write_bundle
from bundlegate.errors import (
    BundleExists,
    ConversionFailed,
    InvalidName,
    PackError,
    ParityFailed,
    SampleMismatch,
    shorten,
)
from bundlegate.manifest import (
    LabelOutput,
    Manifest,
    Outputs,
    Parity,
    Source,
    TensorOutput,
    utc_now,
    valid_name,
)
from bundlegate.packer import fallback, onnx_input, reference
from bundlegate.packer.contents import EXPECTED_FILE, SAMPLE_FILE, json_bytes
from bundlegate.packer.conversion import Converted, convert
from bundlegate.packer.mlflow_model import apply_signature, signature_names
from bundlegate.packer.model_file import class_path, load_model_file
from bundlegate.packer.options import PackOptions, PackResult
from bundlegate.packer.parity import (
    check_parity,
    draft_manifest,
    predict_original,
)
from bundlegate.packer.predictions import Predictions
from bundlegate.packer.samples import read_sample
from bundlegate.packer.schema_inference import ModelSchema, infer_schema, steps_of
from bundlegate.packer.synthetic import synthesize
from bundlegate.repository import next_version

MAX_PARITY_ROWS = 5000


def pack_bundle(model_path: Path, options: PackOptions) -> PackResult:
    """Pack ``model_path`` into ``options.repo/<name>/<version>/`` and return where and what."""
    if not valid_name(options.name):
        raise InvalidName(
            f"invalid bundle name {options.name[:80]!r}: use lower-case letters, digits and _.- "
            "(^[a-z0-9][a-z0-9_.-]{0,62}$, no '..')"
        )
    version = options.version if options.version is not None else next_version(options.repo, options.name)
    if version < 1:
        raise InvalidName(f"invalid version {version}: versions are positive integers")
    if (options.repo / options.name / str(version)).exists():
        raise BundleExists(f"{options.name} version {version} already exists in {options.repo}")

    model = load_model_file(model_path, trust_pickle=options.trust_pickle)
    sample = read_sample(options.sample) if options.sample is not None else model.sample
    options = replace(
        options,
        tags={**model.provenance, **options.tags},
        features=options.features if options.features is not None else signature_names(model.signature),
    )
    if model.onnx_bytes is not None:
        return onnx_input.pack_onnx_file(model.path, model.onnx_bytes, sample, options, version)

    est = model.estimator
    schema = infer_schema(est, sample, options.features, model.path.name)
    apply_signature(schema, model.signature)
    kind: Literal["provided", "synthesized"] = "provided"
    frame = schema.frame
    if frame is None:
        frame = synthesize(est, schema)
        kind = "synthesized"
    check_frame = frame.head(MAX_PARITY_ROWS)
    try:
        original = predict_original(est, schema, check_frame)
    except Exception as exc:  # the estimator's own complaint about the rows
        raise SampleMismatch(
            f"{type(est).__name__} cannot predict the sample rows: "
            f"{type(exc).__name__}: {shorten(str(exc), 200)}"
        ) from None

    notes: list[str] = []
    converted: Converted | None = None
    parity: Parity | None = None
    why = ""
    for precision in ("float32", "float64"):
        if options.progress is not None:
            options.progress(f"converting {type(est).__name__} to ONNX in {precision}")
        try:
            attempt = convert(est, schema, precision)
            draft = draft_manifest(schema, attempt.onnx_inputs, _outputs(schema, attempt.output_names))
            result, _ = check_parity(est, schema, check_frame, attempt.onnx_bytes, draft, kind, original)
        except ConversionFailed as exc:
            why = exc.message
            notes.append(why)
            continue
        except Exception as exc:  # onnxruntime refusing the converted graph
            why = (
                f"onnxruntime cannot run the {precision} conversion: "
                f"{type(exc).__name__}: {shorten(str(exc), 200)}"
            )
            notes.append(why)
            continue
        parity = result
        if result.passed:
            converted = attempt
            notes.append(f"{precision} conversion passed parity on {result.rows} {kind} rows")
            break
        why = f"{precision} conversion fails parity: {result.reason}"
        notes.append(why)

    if converted is None:
        if not options.allow_pickle_fallback:
            error = ParityFailed if parity is not None else ConversionFailed
            raise error(
                f"{_describe(est)} cannot be packed as ONNX: {'; '.join(notes)}. "
                "Pass --allow-pickle-fallback to write a runtime: sklearn bundle instead"
            )
        notes.append("written as a runtime: sklearn bundle (--allow-pickle-fallback)")

    stored = frame.head(reference.STORED_ROWS)
    files = {
        SAMPLE_FILE: json_bytes(reference.stored_rows(schema, stored)),
        EXPECTED_FILE: json_bytes(reference.expected_document(original.head(len(stored)))),
    }
    everything = original if len(check_frame) == len(frame) else predict_original(est, schema, frame)
    ref = reference.build_reference(schema, frame, everything)
    if converted is not None:
        files["model.onnx"] = converted.onnx_bytes
        model_file = "model.onnx"
        outputs = _outputs(schema, converted.output_names)
    else:
        files["model.joblib"] = _joblib_bytes(est)
        model_file = "model.joblib"
        outputs = _outputs(
            schema, ["label", "probabilities"] if schema.task == "classification" else ["value"]
        )
    if options.targets is not None:
        outputs = _named_targets(outputs, options.targets, everything)
    manifest = Manifest(
        name=options.name,
        version=version,
        created_at=utc_now(),
        description=options.description,
        tags=options.tags,
        metrics=options.metrics,
        task=schema.task,
        runtime="onnx" if converted is not None else "sklearn",
        model_file=model_file,
        source=_source(est, model.path.name, converted).model_copy(
            update={"libraries": fallback.libraries(est) if converted is None else None}
        ),
        inputs=schema.inputs,
        onnx_inputs=converted.onnx_inputs if converted is not None else [],
        outputs=outputs,
        files=[],
        parity=parity,
        reference=ref,
        sample_file=SAMPLE_FILE,
        expected_file=EXPECTED_FILE,
    )
    if converted is None:  # the fallback is written only when the gateway serves it as the original
        served = fallback.served_parity(
            manifest, files[model_file], schema, check_frame, original, kind, shorten(why, 300)
        )
        manifest = manifest.model_copy(update={"parity": served})
    if converted is not None:
        notes.extend(_domain_notes(converted.onnx_bytes))
    path = write_bundle(options.repo, manifest, files)
    return PackResult(path, read_bundle(path).manifest, notes)


def _outputs(schema: ModelSchema, names: list[str]) -> Outputs:
    if schema.task == "classification":
        assert schema.classes is not None
        return Outputs(
            label=LabelOutput(onnx_name=names[0], classes=schema.classes),
            probabilities=TensorOutput(onnx_name=names[1]) if schema.has_probabilities else None,
        )
    return Outputs(value=TensorOutput(onnx_name=names[0]))


def _named_targets(outputs: Outputs, targets: list[str], predicted: Predictions) -> Outputs:
    """``outputs`` with the regressor's target names, one per column of what it predicts."""
    values = predicted.values
    width = 1 if values is None or values.ndim < 2 else values.shape[1]
    if outputs.value is None or values is None or len(targets) != width or len(set(targets)) != width:
        raise PackError(
            f"--targets names {len(targets)} target(s); the model predicts "
            + (f"{width} value(s) per row" if values is not None else "no values (not a regressor)")
            + " and each needs a distinct name"
        )
    return outputs.model_copy(update={"value": outputs.value.model_copy(update={"targets": targets})})


def _source(est: Any, file_name: str, converted: Converted | None) -> Source:
    import numpy
    import sklearn

    steps = steps_of(est)
    return Source(
        estimator=class_path(est),
        steps=[class_path(s) for s in steps] if len(steps) > 1 or steps[0] is not est else [],
        model_file=file_name,
        sklearn_version=sklearn.__version__,
        numpy_version=numpy.__version__,
        python_version=platform.python_version(),
        converter=converted.converter if converted is not None else None,
        converter_version=_version(converted.converter) if converted is not None else None,
        opset=converted.opset if converted is not None else None,
        precision=converted.precision if converted is not None else None,
    )


def _version(distribution: str) -> str:
    from importlib.metadata import version

    return version(distribution)


def _joblib_bytes(est: Any) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(est, buf)
    return buf.getvalue()


def _describe(est: Any) -> str:
    steps = steps_of(est)
    if len(steps) == 1:
        return type(est).__name__
    return f"{type(est).__name__}({' → '.join(type(s).__name__ for s in steps)})"


__all__ = ["PackOptions", "PackResult", "pack_bundle"]


def _domain_notes(onnx_bytes: bytes) -> list[str]:
    """A note for each non-standard operator domain of the converted model: the gateway admits such
    a model only with ``--onnx-domains``."""
    from bundlegate.onnx_check import STANDARD_DOMAINS, operator_domains

    extra = sorted(operator_domains(onnx_bytes) - STANDARD_DOMAINS)
    if not extra:
        return []
    listed = ",".join(extra)
    return [f"note: the model uses operators of domain {listed}; serve it with --onnx-domains {listed}"]
