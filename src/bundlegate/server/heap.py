"""glibc malloc tuned for a process that serves large request bodies.

Answering a large JSON batch allocates a few buffers of the body's size at once and frees them all
at the end. With glibc's defaults that memory goes back to the kernel after the request, and the
next request takes it back one page fault at a time.

``keep_freed_memory`` sets two thresholds once per serving process (``mallopt``): blocks up to
``MMAP_THRESHOLD_BYTES`` come from the heap instead of a mapping of their own, and up to
``TRIM_THRESHOLD_BYTES`` of free memory stay in the heap for the next request. Both, because setting
either one turns off glibc's own adjustment of the mmap threshold. The process does not grow past
its peak: what is kept is what a request just used. Nothing is changed where malloc is not glibc's,
where the user tuned it (``MALLOC_*_`` variables, ``glibc.malloc`` tunables) or replaced it
(``LD_PRELOAD`` of jemalloc or tcmalloc).
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping

__all__ = ["MMAP_THRESHOLD_BYTES", "TRIM_THRESHOLD_BYTES", "keep_freed_memory"]

MMAP_THRESHOLD_BYTES = 8 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024
_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3
_USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory(environ: Mapping[str, str] = os.environ) -> str:
    """Tune this process's malloc (see the module docstring); returns what it did, for the log."""
    if platform.libc_ver()[0] != "glibc":
        return "malloc left as it is (not glibc)"
    tuned = [name for name in _USER_VARIABLES if name in environ]
    if "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        tuned.append("GLIBC_TUNABLES")
    if tuned:
        return f"malloc left as {', '.join(tuned)} set it"
    preload = environ.get("LD_PRELOAD", "")
    if "jemalloc" in preload or "tcmalloc" in preload:
        return "malloc left as it is (LD_PRELOAD replaces it)"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "malloc left as it is (no mallopt)"
    if (
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1
        or mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) != 1
    ):
        return "malloc left as it is (mallopt refused the thresholds)"
    return (
        f"malloc keeps freed memory for reuse (blocks up to {MMAP_THRESHOLD_BYTES >> 20} MiB from the heap, "
        f"up to {TRIM_THRESHOLD_BYTES >> 20} MiB free kept)"
    )
