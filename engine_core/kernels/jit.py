"""Warm-up of the S1–S4 kernels: their JIT cost is paid (and measured) once, up front.

The first call of a Numba dispatcher compiles it, or loads it from the on-disk cache; the
time of a warm-up that calls each kernel once on tiny inputs is the run's ``jit_compile_s``.
Cold (empty cache) it is the compile time; warm it is the cache-load time. The validation
kernels (the row scan, the reference arrival kernel ``generate_events``, the id and moment
kernels) compile on first use; ``benchmarks/bench_jit.py`` measures what compiling costs a
whole first run, validation included.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from engine_core.kernels.arrivals import realise_groups
from engine_core.kernels.counts import bucket_counts, target_intensity
from engine_core.kernels.latent import latent_field
from engine_core.timebase import US_PER_S

KERNELS = ("latent_field", "target_intensity", "bucket_counts", "realise_groups")
_warm: set[str] = set()


def readonly(a: np.ndarray) -> np.ndarray:
    """A C-contiguous read-only view: one Numba specialisation for tables that are shared
    (tz tables, factors read from Arrow) whatever their origin."""
    a = np.ascontiguousarray(a)
    if a.flags.writeable:
        a = a.view()
        a.setflags(write=False)
    return a


def warm_up(timings: dict[str, float] | None = None,
            names: tuple[str, ...] = KERNELS, event_dtypes: Sequence[str] = ()) -> float:
    """Call each kernel of ``names`` once; return the seconds that took (0.0 for kernels
    already warm in this process). With ``timings``, each kernel's first-call seconds are
    stored there by name. ``realise_groups`` takes its trailing output arrays in the
    dtypes ``event_dtypes`` (one per event column, ``schemas.EVENT_COLUMNS``)."""
    todo = [n for n in names if n not in _warm]
    if "realise_groups" in todo and not event_dtypes:
        raise ValueError("warming realise_groups needs the event columns' dtypes")
    if not todo:
        return 0.0
    t0 = time.perf_counter()
    i64 = np.zeros(1, np.int64)
    u64 = np.zeros(1, np.uint64)
    f64 = np.ones(1, np.float64)
    i32 = np.zeros(1, np.int32)
    zone_start = readonly(np.array([0, 1], np.int64))
    trans = readonly(np.array([np.iinfo(np.int64).min], np.int64))
    off = readonly(np.zeros(1, np.int32))
    z2 = np.zeros((1, 1))
    lam = np.zeros((1, 1))
    ro = np.array([0, 1], np.int64)
    ones = np.ones(1, np.int64)
    outs = [np.zeros(1, np.dtype(t)) for t in event_dtypes]
    calls = {
        "latent_field": lambda: latent_field(u64, f64 * 0.3, f64 * 24.0, 0, 1, 168, 0.2, 5.0,
                                             z2, z2.copy()),
        "target_intensity": lambda: target_intensity(i32, np.ones((1, 168)), np.ones((1, 3)),
                                                     -1, zone_start, trans, off, 0, 1, 3600,
                                                     lam),
        "bucket_counts": lambda: bucket_counts(
            lam, readonly(np.ones((1, 1))), i64, u64, f64 * 30.0, 0, 1e5, 1e-9, False, 10,
            lam.copy(), np.zeros((1, 1), np.int64), np.zeros((1, 1), np.bool_), i64.copy()),
        "realise_groups": lambda: realise_groups(
            ro, ro, ro, i64, i64, i64, ones, u64, u64, u64, u64, np.zeros(1, np.int8), i64,
            ones, i64, ones, np.full(1, -1, np.int32), u64, i32, i32, i32, f64, i64, i32, u64,
            f64, i64, i32, u64, 0.35, 3600 * US_PER_S, zone_start, trans, off, *outs),
    }
    for name in todo:
        t = time.perf_counter()
        calls[name]()
        _warm.add(name)
        if timings is not None:
            timings[name] = time.perf_counter() - t
    return time.perf_counter() - t0
