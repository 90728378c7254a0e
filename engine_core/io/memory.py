"""Handing freed memory back to the operating system between large passes.

Arrow's allocator (mimalloc) keeps freed pages for reuse, and glibc keeps the top of its
heaps; after a pass that decoded gigabytes, the next pass's peak would otherwise stack on
memory the process no longer uses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import pyarrow as pa


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None on a C library without it."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_memory() -> None:
    """Return the memory Arrow's pool and glibc's heaps keep for reuse to the OS."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
