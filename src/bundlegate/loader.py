"""One bundle version from disk to servable: verified, loaded, compiled and warmed.

``load_version`` runs in a loading thread of the registry::

    version = load_version(path, "credit", 3, settings)   # VersionParts or a BundleError
    version.model, version.schema, version.answers, version.warm

The warm-up predicts the bundle's sample rows twice: the first call pays the one-off allocations
before real traffic does, the second measures a warm call, which seeds the batching queue's learnt
cost. A sample the schema rejects is a broken bundle, and so is one whose answers do not fit the
manifest's outputs or differ from the answers stored at pack time (``expected.json``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bundlegate.admission import check_sample_answers
from bundlegate.answers import Answers
from bundlegate.bundle import Bundle, read_bundle, read_manifest
from bundlegate.decoding import CompiledSchema
from bundlegate.errors import BundleError, BundlegateError, shorten
from bundlegate.manifest import Manifest
from bundlegate.runtime import Model, load_model
from bundlegate.signing import read_trusted_keys


class LoaderSettings(Protocol):
    """The settings loading reads (``bundlegate.settings.Settings`` has them all)."""

    @property
    def allow_pickle(self) -> bool: ...
    @property
    def ort_threads(self) -> int: ...
    @property
    def request_max_rows(self) -> int: ...
    @property
    def max_string_length(self) -> int: ...
    @property
    def max_model_bytes(self) -> int: ...
    @property
    def trusted_keys(self) -> Path | None: ...
    @property
    def extra_onnx_domains(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class VersionParts:
    """What a loaded version is made of; ``warm`` is (rows, seconds) of the warm call, or None."""

    manifest: Manifest
    model: Model
    schema: CompiledSchema
    answers: Answers
    warm: tuple[int, float] | None


def load_version(path: Path, name: str, version: int, settings: LoaderSettings) -> VersionParts:
    """Read, verify, load and warm the bundle at ``path``, which must be ``name`` version ``version``
    (with the admission checks of ``bundle.read_bundle`` and ``bundlegate.admission``)."""
    trusted = None if settings.trusted_keys is None else read_trusted_keys(settings.trusted_keys)
    bundle = read_bundle(path, verify=True, max_file_bytes=settings.max_model_bytes, trusted_keys=trusted)
    manifest = bundle.manifest
    if manifest.name != name or manifest.version != version:
        raise BundleError(
            f"bundle.json says {manifest.name!r} version {manifest.version}, "
            f"but the directory is {name}/{version}"
        )
    model = load_model(
        bundle,
        ort_threads=settings.ort_threads,
        allow_pickle=settings.allow_pickle,
        onnx_domains=settings.extra_onnx_domains,
    )
    schema = CompiledSchema(
        manifest, max_rows=settings.request_max_rows, max_string_length=settings.max_string_length
    )
    rows, seconds = warm_up(model, bundle, schema)
    return VersionParts(manifest, model, schema, Answers(manifest), (rows, seconds) if rows else None)


def warm_up(model: Model, bundle: Bundle, schema: CompiledSchema) -> tuple[int, float]:
    """Predict the bundle's sample rows twice; ``(rows, seconds of the warm call)``, or ``(0, 0.0)``
    when the bundle has no ``sample_file``. ``BundleError`` when the sample does not fit the schema,
    or its answers do not fit the manifest or differ from the stored ``expected_file``
    (``admission.check_sample_answers``)."""
    name = bundle.manifest.sample_file
    if name is None:
        return 0, 0.0
    try:
        rows = json.loads(bundle.read_file(name))
        feed = schema.from_records(rows[: schema.max_rows])
    except (ValueError, TypeError, BundlegateError) as exc:
        text = exc.message if isinstance(exc, BundlegateError) else str(exc)
        raise BundleError(f"the sample rows in {name} do not fit the schema: {shorten(text)}") from None
    check_sample_answers(bundle, model.predict(feed), feed.n_rows)
    started = time.monotonic()
    model.predict(feed)
    return feed.n_rows, time.monotonic() - started


def described(name: str, version: int, path: Path) -> Manifest | None:
    """The manifest of ``name`` version ``version`` at ``path``, read without loading it (to describe
    an ``available`` version); None when unreadable or not that version (its load says why)."""
    try:
        manifest = read_manifest(path)
    except (BundlegateError, OSError):
        return None
    return manifest if (manifest.name, manifest.version) == (name, version) else None
