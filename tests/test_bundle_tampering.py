"""A bundle changed after it was written is refused: an edited manifest (its stored digest, or its
signature), a hard-linked or oversized file; directories the scan skips are named with the reason.
Signatures are real ed25519 (the ``cryptography`` package of the ``sign`` extra)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bundle_factory import iris_model, write
from bundlegate.bundle import MANIFEST_DIGEST_FILE, read_bundle
from bundlegate.cli import cli
from bundlegate.errors import BundleError, DigestMismatch, SignatureError, UnsafePath
from bundlegate.registry import ModelRegistry
from bundlegate.repository import scan_repository_report
from bundlegate.settings import Settings
from bundlegate.signing import SIGNATURE_FILE, read_trusted_keys, sign_bundle


def _edit_manifest(path: Path) -> None:
    """Change the manifest's description: a valid manifest, but not the one that was written."""
    manifest = path / "bundle.json"
    manifest.write_text(manifest.read_text().replace('"description": ""', '"description": "edited"'))


def test_an_edited_manifest_no_longer_matches_its_digest(tmp_path: Path) -> None:
    path = write(tmp_path, iris_model())
    read_bundle(path)
    _edit_manifest(path)
    with pytest.raises(DigestMismatch, match=r"does not match bundle\.json\.sha256"):
        read_bundle(path)
    (path / MANIFEST_DIGEST_FILE).unlink()
    with pytest.raises(DigestMismatch, match="not covered by a digest"):
        read_bundle(path)


def test_a_hard_linked_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, iris_model())
    os.link(path / "model.onnx", tmp_path / "elsewhere.onnx")
    with pytest.raises(UnsafePath, match="hard links"):
        read_bundle(path)


def test_a_model_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, iris_model())
    size = (path / "model.onnx").stat().st_size
    read_bundle(path, max_file_bytes=size)
    with pytest.raises(BundleError, match="over the limit"):
        read_bundle(path, max_file_bytes=size - 1)


def test_skipped_directories_are_reported_with_their_reason(tmp_path: Path) -> None:
    write(tmp_path, iris_model())
    (tmp_path / "Not_A_Name").mkdir()
    (tmp_path / "iris" / "01").mkdir()
    (tmp_path / "iris" / ".2.partial-abc").mkdir()
    (tmp_path / "iris" / "3").mkdir()
    (tmp_path / "iris" / "4").symlink_to(tmp_path / "iris" / "1")
    refs, skipped = scan_repository_report(tmp_path)
    assert [(r.name, r.version) for r in refs] == [("iris", 1)]
    reasons = {p.relative_to(tmp_path).as_posix(): reason for p, reason in skipped}
    assert reasons == {
        "Not_A_Name": "not a valid bundle name",
        "iris/01": "not a version number (1, 2, ... without leading zeros)",
        "iris/.2.partial-abc": "hidden: a partial write in progress or left behind",
        "iris/3": "no bundle.json",
        "iris/4": "a symlink; bundle versions are plain directories",
    }


async def test_the_registry_logs_each_skipped_directory_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, iris_model())
    (tmp_path / "iris" / "01").mkdir()
    registry = ModelRegistry(tmp_path, Settings())
    try:
        with caplog.at_level(logging.WARNING, logger="bundlegate.registry"):
            await registry.start()
            await registry.reload()
    finally:
        await registry.drain(timeout=5)
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert lines == [
        f"skipped {tmp_path / 'iris' / '01'}: not a version number (1, 2, ... without leading zeros)"
    ]


# ----------------------------------------------------------------------------- signatures


@pytest.fixture
def signing(tmp_path: Path) -> tuple[Path, Path]:
    """A private key and a trusted keys file holding its public key, made with the CLI."""
    key = tmp_path / "signing.pem"
    result = CliRunner().invoke(cli, ["signing-key", "create", str(key)])
    assert result.exit_code == 0, result.output
    trusted = tmp_path / "trusted.keys"
    trusted.write_text("# the release key\n" + result.stdout)
    assert key.stat().st_mode & 0o777 == 0o600
    return key, trusted


def test_a_signed_bundle_reads_with_trusted_keys_and_tampering_is_refused(
    tmp_path: Path, signing: tuple[Path, Path]
) -> None:
    key, trusted_file = signing
    trusted = read_trusted_keys(trusted_file)
    path = write(tmp_path / "repo", iris_model())
    with pytest.raises(SignatureError, match=r"no bundle\.json\.sig"):
        read_bundle(path, trusted_keys=trusted)
    result = CliRunner().invoke(cli, ["sign", str(path), "--key", str(key)])
    assert result.exit_code == 0, result.output
    read_bundle(path, trusted_keys=trusted)
    read_bundle(path)  # a signature is no obstacle without trusted keys
    # an edit that also refreshes the digest beside the manifest still breaks the signature
    _edit_manifest(path)
    from bundlegate.bundle import manifest_digest

    (path / MANIFEST_DIGEST_FILE).write_bytes(manifest_digest((path / "bundle.json").read_bytes()))
    read_bundle(path)
    with pytest.raises(SignatureError, match=r"does not match bundle\.json"):
        read_bundle(path, trusted_keys=trusted)


def test_a_signature_by_an_untrusted_key_is_refused(tmp_path: Path, signing: tuple[Path, Path]) -> None:
    _, trusted_file = signing
    other = tmp_path / "other.pem"
    assert CliRunner().invoke(cli, ["signing-key", "create", str(other)]).exit_code == 0
    path = write(tmp_path / "repo", iris_model())
    sign_bundle(path, other)
    assert (path / SIGNATURE_FILE).exists()
    with pytest.raises(SignatureError, match="not trusted"):
        read_bundle(path, trusted_keys=read_trusted_keys(trusted_file))


def test_the_signing_commands_print_json(tmp_path: Path) -> None:
    key = tmp_path / "signing.pem"
    created = CliRunner().invoke(cli, ["signing-key", "create", str(key), "--json"])
    assert created.exit_code == 0, created.output
    public = json.loads(created.stdout)["public_key"]
    trusted = tmp_path / "trusted.keys"
    trusted.write_text(public + "\n")
    path = write(tmp_path / "repo", iris_model())
    signed = CliRunner().invoke(cli, ["sign", str(path), "--key", str(key), "--json"])
    assert signed.exit_code == 0, signed.output
    assert json.loads(signed.stdout) == {
        "name": "iris",
        "version": 1,
        "signature": str(path / SIGNATURE_FILE),
    }
    read_bundle(path, trusted_keys=read_trusted_keys(trusted))


async def test_the_registry_serves_only_signed_bundles_with_trusted_keys(
    tmp_path: Path, signing: tuple[Path, Path]
) -> None:
    key, trusted = signing
    repo = tmp_path / "repo"
    sign_bundle(write(repo, iris_model()), key)
    write(
        repo,
        iris_model().__class__(
            iris_model().manifest.model_copy(update={"name": "unsigned"}), iris_model().files, None, None
        ),
    )
    registry = ModelRegistry(repo, Settings(trusted_keys=trusted))
    try:
        await registry.start()
        assert registry.get("iris").version == 1
        (unsigned,) = registry.model("unsigned").versions
        assert unsigned.state == "failed"
        assert unsigned.error is not None
        assert "bundle.json.sig" in unsigned.error
    finally:
        await registry.drain(timeout=5)


def test_a_broken_trusted_keys_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "trusted.keys"
    bad.write_text("ed25519 not-base64\n")
    with pytest.raises(BundleError, match="line 1"):
        read_trusted_keys(bad)
