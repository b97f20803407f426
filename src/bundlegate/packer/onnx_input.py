"""Packing an existing ``.onnx`` file: the schema read from the graph, no original to compare with.

Supported layouts are the ones skl2onnx produces without ZipMap: one float tensor [N, n] (features
named by ``--features``, the sample's header, or ``f0..``), or one [N, 1] tensor per feature; outputs
either one value tensor (regression) or a label tensor then a probability tensor (classification,
classes read from the classifier node's ``classlabels_*`` attribute). ``parity`` is omitted (there is
nothing to compare with); the sample is still run through the gateway's decoding and runtime to prove
the model works on it and to record ``expected.json`` and reference statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bundlegate.bundle import read_bundle, write_bundle
from bundlegate.dtypes import BY_ONNX_ELEMENT
from bundlegate.errors import ModelFileError, SampleMismatch, shorten
from bundlegate.manifest import (
    DType,
    InputSpec,
    LabelOutput,
    Manifest,
    OnnxInput,
    Outputs,
    Source,
    TensorOutput,
    utc_now,
)
from bundlegate.packer import reference
from bundlegate.packer.contents import EXPECTED_FILE, SAMPLE_FILE, json_bytes
from bundlegate.packer.options import PackOptions, PackResult
from bundlegate.packer.parity import draft_manifest, gateway_predictions
from bundlegate.packer.samples import Sample
from bundlegate.packer.schema_inference import ModelSchema


def pack_onnx_file(
    path: Path, data: bytes, sample: Sample | None, options: PackOptions, version: int
) -> PackResult:
    import onnx

    model = onnx.load_model_from_string(data)
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    onnx_inputs, specs = _inputs(path.name, inputs, sample, options.features)
    task, outputs, classes = _outputs(path.name, graph)
    if sample is None:
        raise SampleMismatch(f"{path.name}: packing an .onnx file needs --sample rows to check it runs")
    frame = sample.frame.copy()
    names = [s.name for s in specs]
    if sample.named and set(names) <= set(frame.columns) and len(frame.columns) == len(names):
        frame = frame[names]
    elif frame.shape[1] == len(names):
        frame.columns = names
    else:
        raise SampleMismatch(f"{sample.source} has {frame.shape[1]} columns, {path.name} takes {len(names)}")
    schema = ModelSchema(
        mode="numeric" if len(onnx_inputs) == 1 else "mixed",
        task=task,
        inputs=specs,
        classes=classes,
        has_probabilities=outputs.probabilities is not None,
        named_columns=False,
        frame=frame,
    )
    for spec in specs:
        col = frame[spec.name]
        if spec.dtype != "string" and col.notna().any():
            try:
                col.astype(float)
            except (TypeError, ValueError):
                raise SampleMismatch(f"{sample.source}: column {spec.name!r} must hold numbers") from None
    nullable = [s.model_copy(update={"nullable": bool(frame[s.name].isna().any())}) for s in specs]
    schema.inputs = nullable
    try:
        answers = gateway_predictions(draft_manifest(schema, onnx_inputs, outputs), data, schema, frame)
    except Exception as exc:  # onnxruntime's InvalidArgument, Fail, ..., or rows the schema refuses
        raise ModelFileError(f"{path.name} cannot run on the sample: {shorten(str(exc), 200)}") from None
    stored = frame.head(reference.STORED_ROWS)
    files = {
        "model.onnx": data,
        SAMPLE_FILE: json_bytes(reference.stored_rows(schema, stored)),
        EXPECTED_FILE: json_bytes(reference.expected_document(answers.head(len(stored)))),
    }
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    manifest = Manifest(
        name=options.name,
        version=version,
        created_at=utc_now(),
        description=options.description,
        tags=options.tags,
        metrics=options.metrics,
        task=task,
        source=Source(
            estimator=f"onnx:{model.producer_name or 'unknown'}",
            model_file=path.name,
            converter=model.producer_name or None,
            converter_version=model.producer_version or None,
            opset=opset,
        ),
        inputs=nullable,
        onnx_inputs=onnx_inputs,
        outputs=outputs,
        files=[],
        reference=reference.build_reference(schema, frame, answers),
        sample_file=SAMPLE_FILE,
        expected_file=EXPECTED_FILE,
    )
    out = write_bundle(options.repo, manifest, files)
    return PackResult(out, read_bundle(out).manifest, ["packed an existing ONNX file; no parity check"])


def _inputs(
    file_name: str, inputs: list[Any], sample: Sample | None, features: list[str] | None
) -> tuple[list[OnnxInput], list[InputSpec]]:
    kinds = []
    for i in inputs:
        t = i.type.tensor_type
        dtype: DType | None = BY_ONNX_ELEMENT.get(t.elem_type)  # type: ignore[assignment]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if dtype is None or len(dims) != 2 or dims[1] is None:
            raise ModelFileError(f"{file_name}: input {i.name!r} is not a 2-D tensor of numbers or strings")
        kinds.append((i.name, dtype, dims[1]))
    if len(kinds) == 1 and (kinds[0][2] > 1 or kinds[0][1] != "string"):
        name, dtype, width = kinds[0]
        if features is not None:
            names = features
        elif sample is not None and sample.named and sample.frame.shape[1] == width:
            names = list(sample.frame.columns)
        else:
            names = [f"f{j}" for j in range(width)]
        if len(names) != width:
            raise SampleMismatch(f"--features names {len(names)} features, {file_name} takes {width}")
        spec_dtype: DType = "int64" if dtype == "int64" else "float64"
        return [OnnxInput(name=name, dtype=dtype, features=names)], [
            InputSpec(name=n, dtype=spec_dtype) for n in names
        ]
    if any(width != 1 for _, _, width in kinds):
        raise ModelFileError(f"{file_name}: several inputs must each be [N, 1] (one per feature)")
    return [OnnxInput(name=n, dtype=d, features=[n]) for n, d, _ in kinds], [
        InputSpec(name=n, dtype="float64" if d in ("float32", "float64") else d) for n, d, _ in kinds
    ]


def _outputs(file_name: str, graph: Any) -> tuple[Any, Outputs, list[Any] | None]:
    outs = list(graph.output)
    if any(not o.type.HasField("tensor_type") for o in outs):
        raise ModelFileError(
            f"{file_name} has a non-tensor output (a ZipMap?); convert with options={{'zipmap': False}}"
        )
    if len(outs) == 1:
        return "regression", Outputs(value=TensorOutput(onnx_name=outs[0].name)), None
    classes = _classes(graph)
    if classes is None:
        raise ModelFileError(f"{file_name}: cannot find the class labels of this classifier in the graph")
    return (
        "classification",
        Outputs(
            label=LabelOutput(onnx_name=outs[0].name, classes=classes),
            probabilities=TensorOutput(onnx_name=outs[1].name),
        ),
        classes,
    )


def _classes(graph: Any) -> list[Any] | None:
    for node in graph.node:
        for attr in node.attribute:
            if attr.name == "classlabels_strings" and attr.strings:
                return [s.decode() for s in attr.strings]
            if attr.name in ("classlabels_int64s", "classlabels_ints") and attr.ints:
                return list(attr.ints)
    return None


__all__ = ["pack_onnx_file"]
