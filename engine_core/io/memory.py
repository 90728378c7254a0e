"""The C library's allocator, from Python: memory handed back between large passes, and a
worker's steady-state thresholds.

Arrow's allocator (mimalloc) keeps freed pages for reuse, and glibc keeps the top of its
heaps; after a pass that decoded gigabytes, the next pass's peak would otherwise stack on
memory the process no longer uses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

import pyarrow as pa

# glibc's mallopt parameters, and the values its dynamic threshold settles on (64-bit)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


@functools.cache
def _glibc(name: str):
    """The C library's function ``name`` (``malloc_trim``, ``mallopt``), or None where the
    library has none (musl, macOS)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def _malloc_trim():
    return _glibc("malloc_trim")


def release_memory() -> None:
    """Return the memory Arrow's pool and glibc's heaps keep for reuse to the OS."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def tune_allocator() -> bool:
    """Give this (worker) process glibc's steady-state allocator thresholds; True when set.

    A dask nanny starts its worker with ``MALLOC_TRIM_THRESHOLD_`` set, and setting any
    threshold turns glibc's dynamic mmap threshold off: every buffer above 128 KiB (each of a
    chunk's columns) is then a fresh ``mmap``, its pages faulted in and zeroed by the kernel,
    and unmapped on free — chunk after chunk. A process left alone raises the threshold to
    32 MiB after the first such free and reuses heap memory instead. This sets that state
    explicitly (trim at twice the threshold, as glibc does); memory above it still goes back
    to the system, so a worker's RSS still falls between runs (docs/operations.md).
    ``ENGINE_WORKER_MALLOC=dask`` keeps dask's setting."""
    if os.environ.get("ENGINE_WORKER_MALLOC", "tuned") == "dask":
        return False
    mallopt = _glibc("mallopt")
    if mallopt is None:  # not glibc: nothing to tune
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
