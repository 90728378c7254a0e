"""The C library's allocator, from Python: a chunked pass's heap kept from chunk to chunk,
memory handed back between large passes, and a worker's steady-state thresholds.

Arrow's allocator (mimalloc) keeps freed pages for reuse, and glibc keeps the top of its
heaps; after a pass that decoded gigabytes, the next pass's peak would otherwise stack on
memory the process no longer uses.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import threading
from collections.abc import Iterator

import pyarrow as pa

# glibc's mallopt parameters, and the values its dynamic threshold settles on (64-bit)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD
# during a chunked pass (chunk_heap): a chunk's columns come from the heap, which keeps them
PASS_MMAP_THRESHOLD = 64 << 20
PASS_TRIM_THRESHOLD = 1 << 30


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


def _thresholds(mmap_threshold: int, trim_threshold: int) -> bool:
    """Set glibc's mmap and trim thresholds; False where they are the environment's to keep
    (``ENGINE_WORKER_MALLOC=dask``) or the C library is not glibc."""
    if os.environ.get("ENGINE_WORKER_MALLOC", "tuned") == "dask":
        return False
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(M_TRIM_THRESHOLD, trim_threshold))


class _HeapPasses:
    """How many chunked passes run in this process (they may overlap in a worker's threads):
    the first sets the pass thresholds, the last restores the steady state."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


_PASSES = _HeapPasses()


@contextlib.contextmanager
def chunk_heap() -> Iterator[bool]:
    """glibc's heap keeps what a chunk frees for the next chunk, for the span of a chunked
    pass (S4 generation); yields whether the thresholds were set.

    Each S4 chunk allocates its columns anew (a few hundred MB of NumPy arrays of 8–24 MB)
    and frees them once written. With glibc's defaults the heap's free top beyond its trim
    threshold (twice the mmap threshold: tens of MB) goes back to the kernel after every
    chunk, so the next chunk's columns are fresh pages the kernel faults in and zeroes.
    During the pass blocks up to ``PASS_MMAP_THRESHOLD`` come from the heap and the heap is
    trimmed only above ``PASS_TRIM_THRESHOLD``; the pages it keeps are the ones the next
    chunk reuses: a sixth fewer page faults, the peak unchanged (docs/benchmarks.md,
    "Keeping a chunk's pages").
    After the last pass glibc's steady-state thresholds are set and the caller's
    :func:`release_memory` trims the heap. Nothing is set where the C library is not glibc,
    or with ``ENGINE_WORKER_MALLOC=dask`` (the environment's thresholds are kept)."""
    with _PASSES.lock:
        tuned = _PASSES.users > 0 or _thresholds(PASS_MMAP_THRESHOLD, PASS_TRIM_THRESHOLD)
        _PASSES.users += tuned
    if not tuned:
        yield False
        return
    try:
        yield True
    finally:
        with _PASSES.lock:
            _PASSES.users -= 1
            if _PASSES.users == 0:
                _thresholds(MMAP_THRESHOLD, TRIM_THRESHOLD)


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
    return _thresholds(MMAP_THRESHOLD, TRIM_THRESHOLD)
