"""What the registry tells the outside while it works: ``RegistryEvents`` (every method does nothing
here; ``rollout_metrics.RolloutMetrics`` turns them into metrics), and ``bundle_bytes``."""

from __future__ import annotations

import os
from pathlib import Path


class RegistryEvents:
    """Callbacks of ``ModelRegistry``; subclasses override what they report."""

    def version_loaded(self, model: str, version: int, seconds: float, size: int, cold: bool) -> None:
        """A version was loaded (``cold``: on its first request, ``--lazy`` or after an eviction)."""

    def evicted(self, model: str, version: int) -> None:
        """A version left memory to keep the loaded versions within the memory budget."""

    def resident(self, total_bytes: int) -> None:
        """The bytes of the loaded versions (their bundle files) after a load, eviction or unload."""

    def serving_refused(self, model: str, refused: bool) -> None:
        """The model's ``serving.json`` on disk is refused (True) or accepted again (False)."""

    def shadow_compared(self, model: str, version: int, agreed: int, rows: int, seconds: float) -> None:
        """A shadow version scored ``rows`` rows of a request in ``seconds``; ``agreed`` matched."""


def bundle_bytes(path: Path) -> int:
    """The bytes of the files in a version directory (what a loaded version is charged)."""
    total = 0
    try:
        with os.scandir(path) as it:
            for entry in it:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    except OSError:
        return 0
    return total
