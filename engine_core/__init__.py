"""arrival engine core: deterministic arrival-event generation, no Dagster inside.

Numba's on-disk cache must live somewhere writable even when the source tree is read-only
(site-packages, a container image): unless the user set NUMBA_CACHE_DIR we point it at a
per-user cache directory before any kernel module imports numba.

Numba only notices edits to the file a cached function is defined in, not to the functions it
calls from other files; a stale cache could then run an old sampler. The directory is
therefore named after a digest of every source file the kernels are compiled from, so any
change to them starts a fresh cache.
"""

from __future__ import annotations

import os as _os
from pathlib import Path as _Path

from engine_core.source_digest import source_digest as _source_digest

# every file that defines a kernel or a constant kernels fold in (the validation kernels in
# checks/ call each other across files too); tests/core/test_numba_cache.py fails when a
# kernel lives elsewhere
KERNEL_SOURCES = ("rng", "kernels", "checks", "fidelity/fold.py", "tz.py", "timebase.py")


def kernel_source_digest() -> str:
    """16 hex digits naming the kernel sources' state (the Numba cache directory's name)."""
    return _source_digest(KERNEL_SOURCES)[:16]


def _default_numba_cache_dir() -> str:
    base = _os.environ.get("XDG_CACHE_HOME") or str(_Path.home() / ".cache")
    return str(_Path(base) / "arrival-engine" / "numba" / kernel_source_digest())


_os.environ.setdefault("NUMBA_CACHE_DIR", _default_numba_cache_dir())

__version__ = "0.1.0"


def code_version() -> str:
    """What the engine's code contributes to its output: the package version and the digest
    of every kernel source (the digest that names the Numba cache). The Dagster assets carry
    it as their ``code_version``, so a kernel change marks every materialised partition
    stale."""
    return f"{__version__}+{kernel_source_digest()}"


# The reading API (engine_core/read.py), imported on first use so that `import engine_core`
# stays light for the CLI and the kernels.
_READ_API = ("read_arrivals", "read_bucket_counts", "validated_files")


def __getattr__(name: str):
    if name in _READ_API:
        from engine_core import read

        return getattr(read, name)
    raise AttributeError(f"module 'engine_core' has no attribute {name!r}")


__all__ = ["__version__", "code_version", *_READ_API]
