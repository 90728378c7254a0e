"""Parallel loops as serial Numba kernels over index ranges, run on a thread pool.

Numba's ``parallel=True`` compiles every prange loop through its parfor passes and a separate
gufunc — on this code base that tripled the cold compile (22 s against 7.7 s for the same
five kernels compiled serially). The kernels are therefore written as serial ``nogil``
functions over a range ``[lo, hi)`` of their outer loop, and :func:`parallel_for` runs the
ranges on a pool of Python threads: the kernels release the GIL, so the threads run on all
cores.

Determinism does not depend on the threads: every range writes only its own slice of the
outputs, and the cut points depend on ``n`` and ``tasks`` alone, never on the thread count.
The number of threads is Numba's (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``), so the
engine's ``threads`` setting keeps its meaning.

One kernel keeps ``parallel=True``: S4's ``realise_groups``, whose generated code is much
faster when its arrays are known not to alias, which only parfor gufuncs get (see the comment
there).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np

_lock = threading.Lock()
_pool: list[Any] = [None, 0]  # (executor, its size)
_inside = threading.local()


def threads() -> int:
    """Threads a parallel loop may use (Numba's setting for the calling thread)."""
    return max(1, int(numba.get_num_threads()))


def same_threads() -> Callable[[], None]:
    """A function that gives the thread calling it this thread's setting: Numba's thread
    count is per thread, so a thread started here would otherwise run its parallel loops
    on Numba's default (every core) whatever the run's ``threads``. An ``initializer`` for a
    ``ThreadPoolExecutor``."""
    n = threads()
    return lambda: numba.set_num_threads(n)


def side_pool(workers: int, name: str) -> ThreadPoolExecutor:
    """A pool for the engine's side work (writers, readers, work beside a pass) whose threads
    run with the calling thread's Numba setting (:func:`same_threads`)."""
    return ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=same_threads())


def _executor(n: int) -> ThreadPoolExecutor:
    with _lock:
        if _pool[0] is None or _pool[1] != n:
            if _pool[0] is not None:
                _pool[0].shutdown(wait=False)
            _pool[0] = ThreadPoolExecutor(
                max_workers=n, thread_name_prefix="engine-kernel", initializer=_mark_worker
            )
            _pool[1] = n
        return _pool[0]


def _mark_worker() -> None:
    _inside.worker = True


def cuts(n: int, tasks: int) -> np.ndarray:
    """``tasks + 1`` ascending cut points of [0, n) into near-equal ranges."""
    tasks = max(1, min(int(tasks), int(n))) if n > 0 else 1
    return (np.arange(tasks + 1, dtype=np.int64) * n) // tasks


def parallel_for(
    kernel: Callable[..., Any], n: int, *args: Any, tasks: int | None = None
) -> list[Any]:
    """Call ``kernel(lo, hi, *args)`` for consecutive ranges covering [0, n); return the
    results in range order. ``tasks`` ranges (default four per thread, for balance) share
    the pool; with one thread, or from inside a pool thread, the ranges run in the caller."""
    t = threads()
    edges = cuts(n, tasks if tasks is not None else 4 * t)
    ranges = list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))
    if t == 1 or len(ranges) == 1 or getattr(_inside, "worker", False):
        return [kernel(lo, hi, *args) for lo, hi in ranges]
    pool = _executor(t)
    futures = [pool.submit(kernel, lo, hi, *args) for lo, hi in ranges]
    return [f.result() for f in futures]
