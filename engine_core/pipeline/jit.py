"""When the run pays for compiling: the kernels' warm-up and the background compiles.

Every state that calls a kernel warms them up first; the seconds are the state's
``jit_compile_s`` (0 once warm in this process). With an empty Numba cache the S2/S3 and
validation kernels compile in background processes (engine_core/kernels/precompile.py) while
this process compiles S4's; waiting for them counts as compile time too.
"""

from __future__ import annotations

import time

from engine_core.kernels import precompile
from engine_core.kernels.jit import KERNELS
from engine_core.kernels.jit import warm_up as _warm_up
from engine_core.schemas import EVENT_COLUMNS

EVENT_DTYPES = tuple(c.kernel_dtype for c in EVENT_COLUMNS)


def warm_up(timings: dict[str, float] | None = None, names: tuple[str, ...] = KERNELS) -> float:
    """Call each S1–S4 kernel of ``names`` once (the S4 kernel with the event columns'
    output dtypes); the seconds it took."""
    return _warm_up(timings, names, EVENT_DTYPES)


def warm_up_kernels() -> float:
    """Compile (or load from the cache) every S1–S4 kernel once; the seconds it took."""
    t0 = time.perf_counter()
    if "kernels" in precompile.start():
        warm_up(names=("realise_groups",))
        precompile.wait("kernels")
    warm_up()  # loads what the background compiled; compiles what it could not
    return time.perf_counter() - t0


def start_background_compiles() -> None:
    """The first state of a run: background compiles start here."""
    precompile.start()


def await_validation_kernels() -> float:
    """Before any rule runs: let a background compile of the validation kernels finish, so
    the checks load them instead of compiling; the seconds waited."""
    return precompile.wait("validation")
