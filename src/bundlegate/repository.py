"""A repository of bundles: ``<repository>/<name>/<version>/`` directories, listed without reading
them (``bundle.read_bundle`` verifies one)::

    refs = scan_repository(Path("bundles"))                  # [BundleRef(name, version, path), ...]
    refs, skipped = scan_repository_report(Path("bundles"))  # and [Skipped(path, reason), ...]
    next_version(Path("bundles"), "credit")                  # max + 1, or 1

What cannot be a bundle version is skipped: invalid names, symlinks, hidden and partially written
directories, version directories without ``bundle.json``; ``scan_repository_report`` says which,
and why, so the gateway can name every directory it does not serve.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from bundlegate.errors import BundleError, InvalidName
from bundlegate.manifest import MANIFEST_FILE, valid_name


@dataclass(frozen=True, order=True)
class BundleRef:
    """A version directory found by ``scan_repository`` (not yet read or verified)."""

    name: str
    version: int
    path: Path


class Skipped(NamedTuple):
    """A directory of the repository that is not served, and why."""

    path: Path
    reason: str


def _version_dirs(name_dir: Path, skipped: list[Skipped] | None = None) -> list[tuple[int, Path]]:
    found: list[tuple[int, Path]] = []
    try:
        with os.scandir(name_dir) as it:
            entries = list(it)
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in entries:
        v = entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        reason = None
        if entry.is_symlink():
            reason = "a symlink; bundle versions are plain directories"
        elif not is_dir:
            continue  # serving.json, notes
        elif v.startswith("."):
            reason = "hidden: a partial write in progress or left behind" if ".partial-" in v else "hidden"
        elif not v.isascii() or not v.isdigit() or v != str(int(v)) or int(v) < 1:
            reason = "not a version number (1, 2, ... without leading zeros)"
        if reason is not None:
            if skipped is not None:
                skipped.append(Skipped(Path(entry.path), reason))
            continue
        found.append((int(v), Path(entry.path)))
    return found


def scan_repository(repo: Path) -> list[BundleRef]:
    """Every ``<name>/<version>/`` directory with a ``bundle.json`` under ``repo``, sorted; not verified.

    Skips what cannot be a bundle: invalid names, symlinks, hidden and partially written directories
    (``scan_repository_report`` says which, and why). Raises ``BundleError`` when ``repo`` is not a
    directory.
    """
    return scan_repository_report(repo)[0]


def scan_repository_report(repo: Path) -> tuple[list[BundleRef], list[Skipped]]:
    """``scan_repository``, and every directory (or symlink) it skipped with the reason."""
    repo = Path(repo)
    if not repo.is_dir():
        raise BundleError(f"{repo}: bundle repository is not a directory")
    refs: list[BundleRef] = []
    skipped: list[Skipped] = []
    with os.scandir(repo) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_symlink():
            skipped.append(Skipped(Path(entry.path), "a symlink; models are plain directories"))
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        if not valid_name(entry.name):
            reason = "hidden" if entry.name.startswith(".") else "not a valid bundle name"
            skipped.append(Skipped(Path(entry.path), reason))
            continue
        for version, vpath in _version_dirs(Path(entry.path), skipped):
            if os.path.lexists(vpath / MANIFEST_FILE):
                refs.append(BundleRef(entry.name, version, vpath))
            else:
                skipped.append(Skipped(vpath, f"no {MANIFEST_FILE}"))
    return sorted(refs), sorted(skipped)


def next_version(repo: Path, name: str) -> int:
    """One more than the highest version directory of ``name`` in ``repo`` (1 for a new name)."""
    if not valid_name(name):
        raise InvalidName(f"invalid bundle name {name[:80]!r}: use ^[a-z0-9][a-z0-9_.-]{{0,62}}$, no '..'")
    versions = [v for v, _ in _version_dirs(Path(repo) / name)]
    return max(versions, default=0) + 1
