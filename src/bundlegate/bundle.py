"""Bundle directories on disk: reading with digest verification, atomic writing (listing a repository
is ``bundlegate.repository``).

A bundle is ``<repository>/<name>/<version>/`` holding ``bundle.json`` and the plain files it lists
(DESIGN.md §2, §6). This module knows nothing of HTTP, onnxruntime or sklearn::

    bundle = read_bundle(Path("bundles/credit/3"))          # Bundle(path, manifest); verified
    path = write_bundle(Path("bundles"), manifest, {"model.onnx": data, "sample.json": rows})

Reading refuses (``UnsafePath``) symlinks, hard-linked files (another name elsewhere could change
them), directories and any file in the bundle directory that ``files`` does not list;
(``DigestMismatch``) a listed file that is missing or whose size or sha256 differs, and a
``bundle.json`` that does not match the digest stored beside it (``bundle.json.sha256``, written with
it); (``BundleError``) a file larger than ``max_file_bytes``. With ``trusted_keys`` the manifest must
also carry a valid ed25519 signature by one of them (``bundle.json.sig``, ``bundlegate.signing``),
which covers every file through the manifest's digests. File names come from the manifest only
after they pass ``manifest.valid_file_name`` (no directories, no ``..``, no leading dot), so a name
never escapes the bundle directory. ONNX external data needs extra files next to the model, which
this check already refuses; the runtime also refuses external data references inside the model.

Writing is atomic: the files go into a hidden temporary directory next to the final one (same
filesystem), each is fsynced, ``bundle.json`` and its digest are written last, then one
``os.rename`` makes the version appear complete. On any failure the temporary directory is removed,
so a version either exists whole or not at all. An existing version is never touched (``BundleExists``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from bundlegate.errors import (
    BundleError,
    BundleExists,
    DigestMismatch,
    InvalidName,
    ManifestError,
    UnsafePath,
)
from bundlegate.manifest import MANIFEST_FILE, FileEntry, Manifest, valid_file_name, valid_name
from bundlegate.signing import SIGNATURE_FILE, TrustedKeys, check_signature

MANIFEST_DIGEST_FILE = MANIFEST_FILE + ".sha256"
BESIDE_MANIFEST = frozenset({MANIFEST_FILE, MANIFEST_DIGEST_FILE, SIGNATURE_FILE})

MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Bundle:
    """One bundle version on disk: its directory and its (validated) manifest."""

    path: Path
    manifest: Manifest

    def file_path(self, name: str) -> Path:
        """The path of a file the manifest lists (``UnsafePath`` for anything else)."""
        if name not in {f.name for f in self.manifest.files}:
            raise UnsafePath(f"{name[:80]!r} is not listed in bundle.json files")
        return self.path / name

    def read_file(self, name: str) -> bytes:
        """The bytes of a listed file, checked against its size and sha256."""
        entry = next((f for f in self.manifest.files if f.name == name), None)
        if entry is None:
            raise UnsafePath(f"{name[:80]!r} is not listed in bundle.json files")
        data = _read_regular(self.path / name)
        if len(data) != entry.size or sha256_hex(data) != entry.sha256:
            raise DigestMismatch(f"{name} does not match its size/sha256 in bundle.json")
        return data


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(name: str, data: bytes) -> FileEntry:
    """The ``files`` entry for ``data`` stored as ``name``."""
    return FileEntry(name=name, size=len(data), sha256=sha256_hex(data))


# ---------------------------------------------------------------------------------------------- reading


def read_manifest(path: Path) -> Manifest:
    """The manifest of the bundle directory ``path`` (``ManifestError`` when missing or invalid)."""
    return _parse_manifest(path, _manifest_bytes(path))


def _manifest_bytes(path: Path) -> bytes:
    _require_dir(path)
    mpath = path / MANIFEST_FILE
    try:
        st = mpath.lstat()
    except FileNotFoundError:
        raise ManifestError(f"{path}: no {MANIFEST_FILE}; not a bundle directory") from None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"{path}: {MANIFEST_FILE} is a symlink")
    if not stat.S_ISREG(st.st_mode):
        raise ManifestError(f"{path}: {MANIFEST_FILE} is not a regular file")
    if st.st_size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: {MANIFEST_FILE} is larger than {MAX_MANIFEST_BYTES} bytes")
    return _read_regular(mpath)


def _parse_manifest(path: Path, raw: bytes) -> Manifest:
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "document"
        msg = first.get("msg", "invalid")
        if first.get("type") == "json_invalid":
            raise ManifestError(f"{path}: {MANIFEST_FILE} is not valid JSON") from None
        raise ManifestError(
            f"{path}: {MANIFEST_FILE} is not a format v1 manifest ({where}: {msg}"
            f"{f'; {e.error_count() - 1} more problem(s)' if e.error_count() > 1 else ''})"
        ) from None


def read_bundle(
    path: Path,
    *,
    verify: bool = True,
    max_file_bytes: int | None = None,
    trusted_keys: TrustedKeys | None = None,
) -> Bundle:
    """Read the bundle directory ``path``.

    Always checks the directory's shape: a valid manifest matching its stored digest, no symlinks,
    hard links or subdirectories, no file that ``files`` does not list, every listed file present and
    at most ``max_file_bytes``, and the model and sample files listed. With ``verify`` (the default)
    also checks every listed file's size and sha256; with ``trusted_keys`` the manifest's signature.
    """
    path = Path(path)
    raw = _manifest_bytes(path)
    manifest = _parse_manifest(path, raw)
    _check_manifest_digest(path, raw)
    if trusted_keys is not None:
        check_signature(raw, _read_optional(path / SIGNATURE_FILE), trusted_keys)
    listed = {f.name: f for f in manifest.files}
    if BESIDE_MANIFEST & set(listed):
        raise ManifestError(f"{path}: files must not list {MANIFEST_FILE} or the files beside it")
    for needed in (manifest.model_file, manifest.sample_file, manifest.expected_file):
        if needed is not None and needed not in listed:
            raise ManifestError(f"{path}: {needed} is named in bundle.json but not listed in files")
    present: set[str] = set()
    with os.scandir(path) as it:
        entries = list(it)
    for entry in entries:
        if entry.name in BESIDE_MANIFEST:
            continue
        if entry.is_symlink():
            raise UnsafePath(f"{path}: {entry.name[:80]!r} is a symlink; bundles hold plain files only")
        if not entry.is_file(follow_symlinks=False):
            raise UnsafePath(
                f"{path}: {entry.name[:80]!r} is not a plain file; bundles hold plain files only"
            )
        if entry.name not in listed:
            raise UnsafePath(f"{path}: {entry.name[:80]!r} is not listed in bundle.json files")
        present.add(entry.name)
    for name, fe in listed.items():
        if name not in present:
            raise DigestMismatch(f"{path}: {name} is listed in bundle.json but missing")
        if max_file_bytes is not None and fe.size > max_file_bytes:
            raise BundleError(
                f"{path}: {name} is {fe.size} bytes, over the limit of {max_file_bytes} (--max-model-bytes)"
            )
        if verify:
            size, digest = _hash_file(path / name)
            if size != fe.size or digest != fe.sha256:
                raise DigestMismatch(f"{path}: {name} does not match its size/sha256 in bundle.json")
    return Bundle(path, manifest)


def manifest_digest(raw: bytes) -> bytes:
    """The content of ``bundle.json.sha256`` for a manifest of bytes ``raw``."""
    return sha256_hex(raw).encode() + b"\n"


def _check_manifest_digest(path: Path, raw: bytes) -> None:
    stored = _read_optional(path / MANIFEST_DIGEST_FILE)
    if stored is None:
        raise DigestMismatch(
            f"{path}: no {MANIFEST_DIGEST_FILE}: {MANIFEST_FILE} is not covered by a digest "
            "(bundles written by this version of `bundle pack` have one)"
        )
    if stored.strip() != sha256_hex(raw).encode():
        raise DigestMismatch(f"{path}: {MANIFEST_FILE} does not match {MANIFEST_DIGEST_FILE}; edited?")


def _read_optional(path: Path) -> bytes | None:
    """A small plain file's bytes, None when it does not exist (symlinks and links refused)."""
    try:
        return _read_regular(path, missing_ok=True)
    except FileNotFoundError:
        return None


def _require_dir(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise BundleError(f"{path}: no such bundle directory") from None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"{path}: the bundle directory is a symlink")
    if not stat.S_ISDIR(st.st_mode):
        raise BundleError(f"{path}: not a directory")


def _open_regular(path: Path, *, missing_ok: bool = False) -> int:
    """Open ``path`` for reading, refusing symlinks (O_NOFOLLOW), non-regular files and files with
    more than one hard link."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        if missing_ok:
            raise
        raise DigestMismatch(f"{path.name} is listed in bundle.json but missing") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafePath(f"{path.name} is a symlink; bundles hold plain files only") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafePath(f"{path.name} is not a plain file")
    if st.st_nlink > 1:
        os.close(fd)
        raise UnsafePath(f"{path.name} has other hard links; bundles hold plain files only")
    return fd


def _read_regular(path: Path, *, missing_ok: bool = False) -> bytes:
    fd = _open_regular(path, missing_ok=missing_ok)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _hash_file(path: Path) -> tuple[int, str]:
    fd = _open_regular(path)
    h = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


# ---------------------------------------------------------------------------------------------- writing


def write_bundle(repo: Path, manifest: Manifest, files: dict[str, bytes]) -> Path:
    """Write ``repo/<name>/<version>/`` atomically and return its path.

    ``files`` maps plain file names to their bytes; the manifest's ``files`` is replaced by their sizes
    and sha256 digests. Raises ``InvalidName`` for a bad name or file name, ``BundleExists`` when the
    version directory exists, ``OSError`` when the disk refuses (nothing is left behind).
    """
    repo = Path(repo)
    if not valid_name(manifest.name):
        raise InvalidName(f"invalid bundle name {manifest.name[:80]!r}")
    for name in files:
        if not valid_file_name(name) or name in BESIDE_MANIFEST:
            raise InvalidName(f"invalid bundle file name {name[:80]!r}")
    for needed in (manifest.model_file, manifest.sample_file, manifest.expected_file):
        if needed is not None and needed not in files:
            raise ManifestError(f"{needed} is named in the manifest but not among the files to write")
    entries = [file_entry(n, files[n]) for n in sorted(files)]
    manifest = manifest.model_copy(update={"files": entries})
    manifest = Manifest.model_validate(manifest.model_dump())  # re-validate the updated copy

    name_dir = repo / manifest.name
    final = name_dir / str(manifest.version)
    repo.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        name_dir.mkdir()
    if name_dir.is_symlink() or not name_dir.is_dir():
        raise UnsafePath(f"{name_dir}: not a plain directory")
    if os.path.lexists(final):
        raise BundleExists(f"{manifest.name} version {manifest.version} already exists in {repo}")

    tmp = _make_temp_dir(name_dir, f".{manifest.version}.partial-")
    try:
        for fname in sorted(files):
            _write_synced(tmp / fname, files[fname])
        raw = manifest.to_json().encode()
        _write_synced(tmp / MANIFEST_FILE, raw)
        _write_synced(tmp / MANIFEST_DIGEST_FILE, manifest_digest(raw))
        _fsync_dir(tmp)
        if os.path.lexists(final):
            raise BundleExists(f"{manifest.name} version {manifest.version} already exists in {repo}")
        try:
            os.rename(tmp, final)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise BundleExists(
                    f"{manifest.name} version {manifest.version} already exists in {repo}"
                ) from None
            raise
        _fsync_dir(name_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new hidden directory in ``parent`` with the umask's permissions (mkdtemp would force 0700)."""
    for _ in range(100):
        candidate = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            candidate.mkdir()
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        return candidate
    raise OSError(errno.EEXIST, "cannot create a temporary directory", str(parent))  # pragma: no cover


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)
