"""When the serving process tunes glibc's malloc (``bundlegate.heap``) and when it leaves it to the user.
What the tuning does to a served request is checked on a real server in test_serve_socket."""

from __future__ import annotations

import platform

import pytest

from bundlegate.server import heap

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")


@glibc_only
@pytest.mark.parametrize(
    ("environ", "said"),
    [
        ({"MALLOC_MMAP_THRESHOLD_": "65536"}, "malloc left as MALLOC_MMAP_THRESHOLD_ set it"),
        (
            {"MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_TOP_PAD_": "0"},
            "malloc left as MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_ set it",
        ),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, "malloc left as GLIBC_TUNABLES set it"),
        ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "LD_PRELOAD replaces it"),
    ],
)
def test_a_user_choice_about_malloc_is_left_alone(environ: dict[str, str], said: str) -> None:
    assert said in heap.keep_freed_memory(environ)


@glibc_only
def test_otherwise_the_thresholds_are_set_and_said() -> None:
    # tunables for something else than malloc do not count as a choice about it
    said = heap.keep_freed_memory({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F"})
    assert said == (
        "malloc keeps freed memory for reuse (blocks up to 8 MiB from the heap, up to 32 MiB free kept)"
    )
