"""The app server's heap trim (widgets/serve/heap.py)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import pytest

from widgets.serve import config, heap


def test_the_server_loads_the_heap_extension():
    assert f"{heap.EXTENSION!r}: True" in config.config_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_trim_returns_freed_heap_memory_to_the_system():
    psutil = pytest.importorskip("psutil")
    trim = heap.malloc_trim()
    assert trim is not None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(4096) for _ in range(40_000)]  # 160 MB in the heap (each below the mmap threshold)
    for b in blocks:
        ctypes.memset(b, 1, 4096)  # touched: resident
    pin = blocks.pop()  # the top of the heap stays in use, so free() alone cannot shrink the heap
    for b in blocks:
        libc.free(b)
    before = psutil.Process().memory_info().rss
    assert trim() is True
    released = before - psutil.Process().memory_info().rss
    libc.free(pin)
    assert released > 100 * 2**20, f"only {released / 2**20:.0f} MB returned"
