"""glibc malloc tuned for a process that serves large request bodies.

A 1000-row JSON batch is a ~0.4 MB body, and answering it allocates a few buffers of that size at once
(uvicorn's body, its copy, the joined body, the parse's numbers) and frees them all at the end. With
glibc's defaults that memory goes back to the kernel after the request and the next request takes it
back one page fault at a time: ~100-130 minor faults a request on the bench's random-forest batch,
~1,900 on a 0.8 MB one (``/proc/PID/stat``), a few per cent of the request's CPU.

``keep_freed_memory`` sets two thresholds once per serving process (``mallopt``): blocks up to
``MMAP_THRESHOLD_BYTES`` come from the heap instead of a mapping of their own, and up to
``TRIM_THRESHOLD_BYTES`` of free memory stay in the heap for the next request (measured: ~0 faults a
request). Both, because setting either one turns off glibc's own adjustment of the mmap threshold:
the trim threshold alone made every 0.4 MB block a fresh mapping (~180 faults a request). The process
does not grow past its peak: what is kept is what a request just used. Nothing is changed where malloc
is not glibc's, where the user tuned it (``MALLOC_*_`` variables, ``glibc.malloc`` tunables) or
replaced it (``LD_PRELOAD`` of jemalloc or tcmalloc, where glibc's settings would not apply anyway).
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
