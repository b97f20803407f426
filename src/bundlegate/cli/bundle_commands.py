"""``bundle pack``, ``bundle inspect``, ``bundle verify``, ``bundle list``.

Errors are raised as ``BundlegateError``/``OSError`` and become one-line messages in the group
(``bundlegate.cli``). The packer (sklearn, skl2onnx) and the runtime (onnxruntime) are imported inside
the commands that need them, so ``bundle list`` and ``bundle inspect`` start fast.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import click

from bundlegate.bundle import read_bundle
from bundlegate.errors import BundleError
from bundlegate.manifest import Manifest
from bundlegate.repository import scan_repository_report


def register(group: click.Group) -> None:
    """Add this module's commands to the `bundle` group."""
    group.add_command(pack)
    group.add_command(inspect)
    group.add_command(verify)
    group.add_command(list_bundles)


# ------------------------------------------------------------------------------------------------- pack


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {v[:60]!r}", param_hint=option)
        out[key.strip()] = value.strip()
    return out


def _metric_value(v: str) -> float | str:
    try:
        f = float(v)
    except ValueError:
        return v
    return f if math.isfinite(f) else v


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Bundle name: lower-case letters, digits and _.-")
@click.option("--version", "version", type=click.IntRange(min=1), help="Version number (default: max + 1).")
@click.option(
    "--sample",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Rows like the training data: CSV with a header, .npy, or JSON records.",
)
@click.option("--features", help="Comma-separated feature names, for models trained on plain arrays.")
@click.option("--targets", help="Comma-separated target names of a multi-output regressor, in order.")
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("bundles"),
    show_default=True,
    help="The bundle repository.",
)
@click.option("--description", default="", help="What the model does, for people.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag (repeatable).")
@click.option("--metric", "metrics", multiple=True, metavar="KEY=VALUE", help="A user metric (repeatable).")
@click.option(
    "--allow-pickle-fallback",
    is_flag=True,
    help="When ONNX conversion or parity fails, write a runtime: sklearn (pickle) bundle instead.",
)
@click.option(
    "--trust-pickle",
    is_flag=True,
    help="Unpickle MODEL as it is, running whatever it names (default: only what models are made of).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def pack(
    model: Path,
    name: str,
    version: int | None,
    sample: Path | None,
    features: str | None,
    targets: str | None,
    out: Path,
    description: str,
    tags: tuple[str, ...],
    metrics: tuple[str, ...],
    allow_pickle_fallback: bool,
    trust_pickle: bool,
    as_json: bool,
) -> None:
    """Pack MODEL (.pkl/.joblib/.skops of a fitted estimator, .onnx, or an MLflow model directory)
    into OUT/NAME/VERSION/."""
    if trust_pickle:
        click.echo(
            f"warning: --trust-pickle: {model.name} is unpickled as it is; it can run any code", err=True
        )
    from bundlegate.packer import PackOptions, pack_bundle

    names = [f.strip() for f in features.split(",")] if features is not None else None
    options = PackOptions(
        name=name,
        repo=out,
        version=version,
        sample=sample,
        features=names,
        targets=[t.strip() for t in targets.split(",")] if targets is not None else None,
        description=description,
        tags=_pairs(tags, "--tag"),
        metrics={k: _metric_value(v) for k, v in _pairs(metrics, "--metric").items()},
        allow_pickle_fallback=allow_pickle_fallback,
        trust_pickle=trust_pickle,
        progress=lambda step: click.echo(f"  {step}", err=True),
    )
    new_dirs = [d for d in (out, out / name) if not d.exists()]
    try:
        result = pack_bundle(model, options)
    except KeyboardInterrupt:
        for d in reversed(new_dirs):  # a version is written whole or not at all; its new parents go too
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    m = result.manifest
    for note in result.notes:
        click.echo(f"  {note}", err=True)
    if as_json:
        parity = m.parity.model_dump(exclude_none=True) if m.parity is not None else None
        summary = {"name": m.name, "version": m.version, "runtime": m.runtime, "path": str(result.path)}
        click.echo(json.dumps(summary | {"parity": parity, "notes": result.notes}))
        return
    click.echo(f"packed {m.name} version {m.version} ({m.runtime}): {result.path}")
    click.echo(f"  {_parity_text(m)}")


# ---------------------------------------------------------------------------------------------- inspect


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print bundle.json (verified) for machines.")
def inspect(path: Path, as_json: bool) -> None:
    """Show what the bundle at PATH expects and answers (its files are verified first)."""
    bundle = read_bundle(path, verify=True)
    m = bundle.manifest
    if as_json:
        click.echo(m.to_json(), nl=False)
        return
    click.echo(f"{m.name} version {m.version}  ({m.task}, runtime {m.runtime}, created {m.created_at})")
    if m.description:
        click.echo(f"  {m.description}")
    src = m.source
    made = f"{src.estimator}"
    if src.converter:
        made += f" via {src.converter} {src.converter_version or ''} opset {src.opset}, {src.precision}"
    click.echo(f"source: {made}")
    if src.steps:
        click.echo(f"  steps: {' → '.join(s.rsplit('.', 1)[-1] for s in src.steps)}")
    if src.sklearn_version:
        click.echo(
            f"  scikit-learn {src.sklearn_version}, numpy {src.numpy_version}, python {src.python_version}"
        )
    if src.libraries:
        click.echo(f"  also needs {', '.join(f'{k} {v}' for k, v in sorted(src.libraries.items()))}")
    for tag, text in sorted(m.tags.items()):
        click.echo(f"tag {tag}={text}")
    for k, v in sorted(m.metrics.items()):
        click.echo(f"metric {k}={v}")
    click.echo(f"inputs ({len(m.inputs)}):")
    width = max(len(i.name) for i in m.inputs)
    for i in m.inputs:
        extra = []
        if i.nullable:
            extra.append("nullable")
        if i.min is not None and i.max is not None:
            extra.append(f"seen {i.min:g}..{i.max:g}")
        if i.categories is not None:
            cats = ", ".join(str(c) for c in i.categories[:10])
            more = f", … ({len(i.categories)})" if len(i.categories) > 10 else ""
            unknown = "" if i.allow_unknown else "; others refused"
            extra.append(f"categories {cats}{more}{unknown}")
        click.echo(f"  {i.name:<{width}}  {i.dtype:<7}  {'; '.join(extra)}".rstrip())
    click.echo("outputs:")
    if m.outputs.label is not None:
        click.echo(f"  label: one of {', '.join(str(c) for c in m.outputs.label.classes)}")
    if m.outputs.probabilities is not None:
        click.echo("  probabilities: one per class, in that order")
    if m.outputs.value is not None:
        click.echo("  value: a number")
    click.echo(f"parity: {_parity_text(m)}")
    click.echo("files:")
    for f in m.files:
        click.echo(f"  {f.name:<14} {f.size:>10} bytes  sha256 {f.sha256[:16]}…")


def _parity_text(m: Manifest) -> str:
    p = m.parity
    if p is None:
        return "not checked (packed from an ONNX file)"
    if p.rows == 0:
        return f"FAILED: no ONNX model to compare ({p.reason})"
    figures = []
    if p.label_agreement is not None:
        figures.append(f"labels agree {p.label_agreement:.2%}")
    if p.max_abs_diff_probabilities is not None:
        figures.append(f"max abs diff probabilities {p.max_abs_diff_probabilities:.3g}")
    if p.max_abs_diff_values is not None:
        figures.append(f"max abs diff values {p.max_abs_diff_values:.3g}")
    verdict = "passed" if p.passed else f"FAILED ({p.reason})"
    return f"{verdict} on {p.rows} {p.sample} rows: {', '.join(figures)} (tolerance {p.tolerance:g})"


# ----------------------------------------------------------------------------------------------- verify


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--allow-pickle", is_flag=True, help="Also run runtime: sklearn bundles (unpickles the model).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--onnx-domains", default="", help="ONNX operator domains admitted beyond the standard ones.")
def verify(path: Path, allow_pickle: bool, as_json: bool, onnx_domains: str) -> None:
    """Re-check the bundle at PATH: digests, manifest, and the stored sample rows through the model."""
    bundle = read_bundle(path, verify=True)
    m = bundle.manifest
    if path.name.isdigit() and path.parent.name and (path.name, path.parent.name) != (str(m.version), m.name):
        raise BundleError(
            f"{path}: bundle.json says {m.name} version {m.version}, the directory is "
            f"{path.parent.name}/{path.name}"
        )
    run = not (m.runtime == "sklearn" and not allow_pickle)
    rows, diff = 0, 0.0
    if run:
        from bundlegate.replay import replay  # onnxruntime only for the commands that run a model

        domains = tuple(d.strip() for d in onnx_domains.split(",") if d.strip())
        rows, diff = replay(bundle, allow_pickle=allow_pickle, onnx_domains=domains)
    if as_json:
        result = {"name": m.name, "version": m.version, "files": len(m.files), "model_run": run}
        click.echo(json.dumps(result | {"sample_rows": rows, "max_abs_diff": diff}))
        return
    click.echo(f"{m.name} version {m.version}: manifest valid, {len(m.files)} files match their sha256")
    if not run:
        click.echo("model not run: runtime sklearn bundles are pickles (pass --allow-pickle to run it)")
        return
    if rows == 0:
        click.echo("model loads; no stored sample rows to replay")
        return
    click.echo(f"{rows} stored sample rows reproduce the pack-time predictions (max abs diff {diff:.3g})")


# ------------------------------------------------------------------------------------------------- list


@click.command(name="list")
@click.argument("repo", type=click.Path(path_type=Path), default=Path("bundles"))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per bundle version.")
def list_bundles(repo: Path, as_json: bool) -> None:
    """List the bundles in REPO: names, versions, runtime, parity and creation time."""
    rows: list[dict[str, Any]] = []
    refs, skipped = scan_repository_report(repo)
    for path, reason in skipped:
        click.echo(f"skipped {path}: {reason}", err=True)
    for ref in refs:
        try:
            m = read_bundle(ref.path, verify=False).manifest
        except BundleError as e:
            rows.append({"name": ref.name, "version": ref.version, "error": e.message})
            continue
        parity = None if m.parity is None else ("passed" if m.parity.passed else "failed")
        rows.append(
            {
                "name": ref.name,
                "version": ref.version,
                "runtime": m.runtime,
                "task": m.task,
                "parity": parity,
                "created_at": m.created_at,
            }
        )
    if as_json:
        for r in rows:
            click.echo(json.dumps(r))
        return
    if not rows:
        click.echo(f"no bundles in {repo}")
        return
    table: list[tuple[str, ...]] = [("NAME", "VERSION", "RUNTIME", "PARITY", "CREATED")]
    for r in rows:
        if "error" in r:
            table.append((str(r["name"]), str(r["version"]), "-", "-", f"invalid: {r['error']}"))
        else:
            table.append((r["name"], str(r["version"]), r["runtime"], r["parity"] or "n/a", r["created_at"]))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[4])
