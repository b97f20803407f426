"""The bundle format on disk: atomic writes, verified reads, safe names, repository listing."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from bundlegate.bundle import read_bundle, write_bundle
from bundlegate.errors import (
    BundleError,
    BundleExists,
    DigestMismatch,
    InvalidName,
    ManifestError,
    UnsafePath,
)
from bundlegate.manifest import InputSpec, Manifest, OnnxInput, Outputs, Source, TensorOutput, utc_now
from bundlegate.repository import next_version, scan_repository


def make_manifest(name: str = "price", version: int = 1, **changes: object) -> Manifest:
    fields: dict[str, object] = {
        "name": name,
        "version": version,
        "created_at": utc_now(),
        "task": "regression",
        "source": Source(estimator="sklearn.linear_model.Ridge"),
        "inputs": [InputSpec(name="a", dtype="float64")],
        "onnx_inputs": [OnnxInput(name="input", dtype="float32", features=["a"])],
        "outputs": Outputs(value=TensorOutput(onnx_name="variable")),
        "files": [],
        "sample_file": "sample.json",
    }
    fields.update(changes)
    return Manifest.model_validate(fields)


FILES = {"model.onnx": b"\x08\x07onnx-bytes", "sample.json": b'{"records": [{"a": 1.0}]}'}


def test_write_then_read_round_trips_with_digests(tmp_path: Path) -> None:
    path = write_bundle(tmp_path, make_manifest(), FILES)
    assert path == tmp_path / "price" / "1"
    assert sorted(p.name for p in path.iterdir()) == [
        "bundle.json",
        "bundle.json.sha256",
        "model.onnx",
        "sample.json",
    ]
    bundle = read_bundle(path)
    assert bundle.manifest.name == "price"
    assert {f.name: f.size for f in bundle.manifest.files} == {"model.onnx": 12, "sample.json": 25}
    assert bundle.read_file("model.onnx") == FILES["model.onnx"]
    # no temporary directories left next to the version
    assert [p.name for p in (tmp_path / "price").iterdir()] == ["1"]


def test_existing_version_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = write_bundle(tmp_path, make_manifest(), FILES)
    before = (path / "bundle.json").read_bytes()
    with pytest.raises(BundleExists, match="price version 1 already exists"):
        write_bundle(tmp_path, make_manifest(description="other"), {**FILES, "model.onnx": b"new"})
    assert (path / "bundle.json").read_bytes() == before
    assert [p.name for p in (tmp_path / "price").iterdir()] == ["1"]


@pytest.mark.parametrize("bad", ["../evil", "/abs", ".hidden", "sub/dir", "bundle.json", ""])
def test_unsafe_file_names_are_refused_before_writing(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidName):
        write_bundle(tmp_path, make_manifest(), {**FILES, bad: b"x"})
    assert not (tmp_path / "price").exists() or list((tmp_path / "price").iterdir()) == []


def test_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_rename = os.rename

    def full_disk(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_bundle(tmp_path, make_manifest(), FILES)
    monkeypatch.setattr(os, "rename", real_rename)
    assert list((tmp_path / "price").iterdir()) == []
    assert scan_repository(tmp_path) == []


def test_unwritable_repository_is_an_os_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    repo.chmod(0o500)
    try:
        if os.geteuid() == 0:  # root ignores directory permissions: make it a file in the way instead
            repo.chmod(0o700)
            repo.rmdir()
            repo.write_text("not a directory")
            with pytest.raises(OSError, match=r"Not a directory|File exists"):
                write_bundle(repo, make_manifest(), FILES)
            assert repo.read_text() == "not a directory"
        else:
            with pytest.raises(PermissionError):
                write_bundle(repo, make_manifest(), FILES)
            assert list(repo.iterdir()) == []
    finally:
        if repo.is_dir():
            repo.chmod(0o700)


def test_tampered_file_fails_verification(tmp_path: Path) -> None:
    path = write_bundle(tmp_path, make_manifest(), FILES)
    (path / "model.onnx").write_bytes(b"\x08\x07onnx-bytez")
    with pytest.raises(DigestMismatch, match=re.escape("model.onnx does not match")):
        read_bundle(path)
    # without verification the shape is still checked, digests are not
    assert read_bundle(path, verify=False).manifest.name == "price"


def test_missing_listed_file_is_refused(tmp_path: Path) -> None:
    path = write_bundle(tmp_path, make_manifest(), FILES)
    (path / "sample.json").unlink()
    with pytest.raises(DigestMismatch, match=re.escape("sample.json is listed in bundle.json but missing")):
        read_bundle(path, verify=False)


def test_unlisted_extra_file_is_refused(tmp_path: Path) -> None:
    path = write_bundle(tmp_path, make_manifest(), FILES)
    (path / "model.onnx.data").write_bytes(b"external weights")
    with pytest.raises(UnsafePath, match="not listed"):
        read_bundle(path)


def test_symlinked_file_is_refused(tmp_path: Path) -> None:
    path = write_bundle(tmp_path, make_manifest(), FILES)
    outside = tmp_path / "secret"
    outside.write_bytes(FILES["model.onnx"])
    (path / "model.onnx").unlink()
    (path / "model.onnx").symlink_to(outside)
    with pytest.raises(UnsafePath, match="symlink"):
        read_bundle(path)


def test_subdirectory_is_refused(tmp_path: Path) -> None:
    path = write_bundle(tmp_path, make_manifest(), FILES)
    (path / "extra").mkdir()
    with pytest.raises(UnsafePath, match="not a plain file"):
        read_bundle(path)


@pytest.mark.parametrize("bad_name", ["../model.onnx", "/etc/passwd", "a/b"])
def test_manifest_listing_a_path_is_refused(tmp_path: Path, bad_name: str) -> None:
    path = write_bundle(tmp_path, make_manifest(), FILES)
    doc = json.loads((path / "bundle.json").read_text())
    doc["files"][0]["name"] = bad_name
    (path / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match="not a format v1 manifest"):
        read_bundle(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"format_version": 2}), "not a format v1 manifest"),
        ("[]", "not a format v1 manifest"),
    ],
)
def test_corrupted_manifest_is_a_manifest_error(tmp_path: Path, content: str, message: str) -> None:
    path = write_bundle(tmp_path, make_manifest(), FILES)
    (path / "bundle.json").write_text(content)
    with pytest.raises(ManifestError, match=message):
        read_bundle(path)


def test_not_a_bundle_directory(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=re.escape("no bundle.json")):
        read_bundle(tmp_path)
    with pytest.raises(BundleError, match="no such bundle directory"):
        read_bundle(tmp_path / "nope")


def test_model_file_must_be_listed(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=re.escape("model.joblib is named")):
        write_bundle(tmp_path, make_manifest(model_file="model.joblib"), FILES)


def test_scan_and_next_version_skip_what_is_not_a_bundle(tmp_path: Path) -> None:
    write_bundle(tmp_path, make_manifest(version=1), FILES)
    write_bundle(tmp_path, make_manifest(version=3), FILES)
    write_bundle(tmp_path, make_manifest(name="iris", version=2), FILES)
    (tmp_path / "price" / ".4.partial-x").mkdir()  # an interrupted write
    (tmp_path / "price" / "007").mkdir()
    (tmp_path / "price" / "notes.txt").write_text("hi")
    (tmp_path / "Bad Name" / "1").mkdir(parents=True)
    (tmp_path / "price" / "9").mkdir()  # no bundle.json: not listed, but its number is taken
    refs = scan_repository(tmp_path)
    assert [(r.name, r.version) for r in refs] == [("iris", 2), ("price", 1), ("price", 3)]
    assert refs[0].path == tmp_path / "iris" / "2"
    assert next_version(tmp_path, "price") == 10
    assert next_version(tmp_path, "iris") == 3
    assert next_version(tmp_path, "new") == 1
    with pytest.raises(InvalidName):
        next_version(tmp_path, "../up")


def test_scan_of_missing_repository_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a directory"):
        scan_repository(tmp_path / "missing")
