"""Bundle repositories on object storage (``s3://bucket/prefix``): a local mirror to serve, and push.

The store holds the local layout under its prefix: ``<name>/<version>/bundle.json``, the files it
lists and the files beside it (its digest, its signature), ``<name>/serving.json``. A version exists
once its ``bundle.json`` does; ``push_bundle`` uploads the other files first and ``bundle.json``
last, so a reader never takes a partial version::

    mirror = RepositoryMirror("s3://models/prod", cache_root, endpoint_url=None)
    mirror.sync()                      # blocking; the registry calls it before each scan of mirror.local
    push_bundle(Path("bundles/iris/3"), "s3://models/prod")     # -> "s3://models/prod/iris/3"

``sync`` makes ``mirror.local`` (a directory of the cache, one per URL) match the store: each new
version is downloaded into a hidden directory, checked with ``read_bundle(verify=True)`` (sizes and
sha256 against its ``bundle.json``), then renamed into place; versions gone from the store are removed;
``serving.json`` files follow the store's. A version that fails its check is logged once and left out
until its ``bundle.json`` changes. When the store cannot be listed (unreachable, refusing), nothing
local changes: the gateway goes on serving what it has, and says so in the log.

Access goes through fsspec (s3fs for ``s3://``, any installed fsspec protocol otherwise), with
credentials from the usual places (``AWS_*`` variables, ``~/.aws`` files, instance roles) and an
S3-compatible endpoint from ``endpoint_url`` (``BUNDLEGATE_S3_ENDPOINT_URL``). No credential ever
reaches a log line or an error message from this module: errors are reported by type and key.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundlegate.bundle import BESIDE_MANIFEST, MAX_MANIFEST_BYTES, read_bundle
from bundlegate.errors import BundleError, BundleExists, InvalidName, ManifestError, StoreError
from bundlegate.manifest import MANIFEST_FILE, Manifest, valid_file_name, valid_name
from bundlegate.repository import scan_repository

log = logging.getLogger("bundlegate.objectstore")

SERVING_FILE = "serving.json"
_TIMEOUTS = {"connect_timeout": 5, "read_timeout": 30, "retries": {"max_attempts": 2}}


def open_store(url: str, endpoint_url: str | None = None) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the root path in it (no trailing slash)."""
    try:
        import fsspec
    except ImportError:
        raise StoreError("object-storage repositories need fsspec: pip install 'bundlegate[s3]'") from None
    scheme = url.partition("://")[0]
    options: dict[str, Any] = {"skip_instance_cache": True}
    if scheme in ("s3", "s3a"):
        options |= {"use_listings_cache": False, "config_kwargs": _TIMEOUTS}
        if endpoint_url:
            options["endpoint_url"] = endpoint_url
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except ImportError:
        raise StoreError(
            f"{scheme}:// repositories need their fsspec driver: pip install 'bundlegate[s3]'"
        ) from None
    except ValueError:
        raise StoreError(f"no fsspec filesystem for {scheme}:// URLs") from None
    return fs, str(root).rstrip("/")


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/bundlegate`` (or ``~/.cache/bundlegate``): where mirrors live by default."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bundlegate"


def cache_dir_for(url: str, cache_root: Path) -> Path:
    """The mirror directory of ``url`` under ``cache_root`` (one per URL, so mirrors never mix)."""
    return Path(cache_root) / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


@dataclass
class SyncReport:
    """What one ``sync`` did; ``reachable`` is False when the store could not be listed."""

    reachable: bool = True
    added: list[tuple[str, int]] = field(default_factory=list)
    removed: list[tuple[str, int]] = field(default_factory=list)
    failed: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Listing:
    versions: dict[tuple[str, int], dict[str, Any]]  # (name, version) -> {file: info}
    serving: dict[str, dict[str, Any]]  # name -> info of its serving.json


class RepositoryMirror:
    """Keeps ``local`` (a directory of the cache) equal to the repository at ``url`` (see module)."""

    def __init__(self, url: str, cache_root: Path, *, endpoint_url: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.endpoint_url = endpoint_url
        self.local = cache_dir_for(self.url, cache_root)
        self.local.mkdir(parents=True, exist_ok=True)
        self._refused: dict[tuple[str, int], str] = {}  # version -> tag of the bundle.json refused
        self._unreachable = False

    def sync(self) -> SyncReport:
        """Download new versions, drop removed ones, refresh ``serving.json`` (blocking)."""
        report = SyncReport()
        try:
            fs, root = open_store(self.url, self.endpoint_url)
            listing = _list(fs, root)
        except Exception as e:  # the store's and the network's own error types
            report.reachable = False
            if not self._unreachable:
                log.warning(
                    "object store %s cannot be listed (%s); serving the %d cached version(s)",
                    self.url,
                    _describe(e),
                    len(scan_repository(self.local)),
                )
            self._unreachable = True
            return report
        if self._unreachable:
            log.info("object store %s is reachable again", self.url)
            self._unreachable = False
        cached = {(r.name, r.version) for r in scan_repository(self.local)}
        for key in sorted(set(listing.versions) - cached):
            name, version = key
            files = listing.versions[key]
            tag = _tag(files[MANIFEST_FILE])
            if self._refused.get(key) == tag:
                continue
            try:
                self._fetch(fs, root, name, version, files)
                report.added.append(key)
                self._refused.pop(key, None)
            except BundleError as e:  # the version itself is wrong: wait for a new bundle.json
                log.error("not serving %s version %d from %s: %s", name, version, self.url, e.message)
                self._refused[key] = tag
                report.failed.append(key)
            except Exception as e:  # the store or the network: retried at the next sync
                log.warning(
                    "downloading %s version %d from %s failed: %s", name, version, self.url, _describe(e)
                )
                report.failed.append(key)
        for name, version in sorted(cached - set(listing.versions)):
            shutil.rmtree(self.local / name / str(version), ignore_errors=True)
            report.removed.append((name, version))
        names = {name for name, _ in listing.versions} | set(listing.serving)
        for name in names | {p.name for p in self.local.iterdir() if valid_name(p.name)}:
            self._sync_serving(fs, root, name, listing.serving.get(name))
        return report

    def _fetch(self, fs: Any, root: str, name: str, version: int, files: dict[str, Any]) -> None:
        info = files[MANIFEST_FILE]
        if int(info.get("size") or 0) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{MANIFEST_FILE} is larger than {MAX_MANIFEST_BYTES} bytes")
        raw = fs.cat_file(f"{root}/{name}/{version}/{MANIFEST_FILE}")
        try:
            manifest = Manifest.model_validate_json(raw)
        except ValueError:
            raise ManifestError(f"{MANIFEST_FILE} is not a valid format v1 manifest") from None
        if manifest.name != name or manifest.version != version:
            raise ManifestError(
                f"bundle.json says {manifest.name!r} version {manifest.version}, "
                f"the store path {name}/{version}"
            )
        missing = [f.name for f in manifest.files if f.name not in files]
        if missing:
            raise ManifestError(f"{missing[0]} is listed in bundle.json but not in the store")
        name_dir = self.local / name
        name_dir.mkdir(exist_ok=True)
        tmp = name_dir / f".{version}.partial-{os.getpid()}-{os.urandom(4).hex()}"
        tmp.mkdir()
        try:
            for entry in manifest.files:
                if not valid_file_name(entry.name):
                    raise InvalidName(f"invalid bundle file name {entry.name[:80]!r}")
                fs.get_file(f"{root}/{name}/{version}/{entry.name}", str(tmp / entry.name))
            for beside in sorted((BESIDE_MANIFEST - {MANIFEST_FILE}) & set(files)):  # digest, signature
                fs.get_file(f"{root}/{name}/{version}/{beside}", str(tmp / beside))
            (tmp / MANIFEST_FILE).write_bytes(raw)
            read_bundle(tmp, verify=True)  # every file's size and sha256, after the download
            try:
                os.rename(tmp, name_dir / str(version))
            except OSError:
                if not (name_dir / str(version) / MANIFEST_FILE).exists():
                    raise
                # another worker process of this gateway mirrored it first
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _sync_serving(self, fs: Any, root: str, name: str, info: dict[str, Any] | None) -> None:
        path = self.local / name / SERVING_FILE
        if info is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        try:
            data = fs.cat_file(f"{root}/{name}/{SERVING_FILE}")
        except Exception as e:  # kept as it was; the next sync tries again
            log.warning("reading %s/serving.json from %s failed: %s", name, self.url, _describe(e))
            return
        with contextlib.suppress(FileNotFoundError):
            if path.read_bytes() == data:
                return
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{SERVING_FILE}.{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def push_bundle(path: Path, url: str, *, endpoint_url: str | None = None) -> str:
    """Upload the bundle directory ``path`` (verified first) to the repository at ``url`` as
    ``<name>/<version>/``: the listed files, the manifest's digest and signature, ``bundle.json``
    last; returns the version's URL. ``BundleExists`` when the
    store already has that version (versions are immutable)."""
    bundle = read_bundle(Path(path), verify=True)
    manifest = bundle.manifest
    fs, root = open_store(url, endpoint_url)
    where = f"{root}/{manifest.name}/{manifest.version}"
    try:
        exists = fs.exists(f"{where}/{MANIFEST_FILE}")
    except Exception as e:
        raise StoreError(f"cannot reach {url.rstrip('/')}: {_describe(e)}") from None
    if exists:
        raise BundleExists(f"{manifest.name} version {manifest.version} already exists in {url.rstrip('/')}")
    beside = sorted(n for n in BESIDE_MANIFEST - {MANIFEST_FILE} if (bundle.path / n).is_file())
    try:
        for file_name in [*(entry.name for entry in manifest.files), *beside]:
            fs.put_file(str(bundle.path / file_name), f"{where}/{file_name}")
        fs.put_file(str(bundle.path / MANIFEST_FILE), f"{where}/{MANIFEST_FILE}")
    except Exception as e:
        raise StoreError(f"uploading to {url.rstrip('/')} failed: {_describe(e)}") from None
    return f"{url.rstrip('/')}/{manifest.name}/{manifest.version}"


def _list(fs: Any, root: str) -> _Listing:
    """Every bundle version with a ``bundle.json`` under ``root``, and every ``serving.json``."""
    found = fs.find(root, detail=True)
    versions: dict[tuple[str, int], dict[str, Any]] = {}
    serving: dict[str, dict[str, Any]] = {}
    prefix = root + "/"
    for key, info in found.items():
        if not key.startswith(prefix) or info.get("type") == "directory":
            continue
        parts = key[len(prefix) :].split("/")
        if len(parts) == 2 and parts[1] == SERVING_FILE and valid_name(parts[0]):
            serving[parts[0]] = info
        elif (
            len(parts) == 3
            and valid_name(parts[0])
            and _version(parts[1])
            and (parts[2] == MANIFEST_FILE or valid_file_name(parts[2]))
        ):
            versions.setdefault((parts[0], int(parts[1])), {})[parts[2]] = info
    return _Listing({k: v for k, v in versions.items() if MANIFEST_FILE in v}, serving)


def _version(text: str) -> bool:
    return text.isdigit() and text == str(int(text)) and int(text) >= 1


def _tag(info: dict[str, Any]) -> str:
    return str(info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("size"))


def _describe(exc: BaseException) -> str:
    """An error as the log shows it: its type, and its message only when it is one of ours."""
    if isinstance(exc, BundleError):
        return exc.message
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if isinstance(exc, PermissionError):
        return "access denied"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


__all__ = [
    "RepositoryMirror",
    "StoreError",
    "SyncReport",
    "cache_dir_for",
    "default_cache_root",
    "open_store",
    "push_bundle",
]
