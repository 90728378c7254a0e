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

import hashlib as _hashlib
import os as _os
from pathlib import Path as _Path

_HERE = _Path(__file__).resolve().parent
# every file that defines a kernel (the validation kernels in checks/ call each other across
# files too); tests/core/test_numba_cache.py fails when a kernel lives elsewhere
_KERNEL_SOURCES = ("rng", "kernels", "checks", "tz.py")


def _kernel_source_files() -> list[_Path]:
    files: list[_Path] = []
    for name in _KERNEL_SOURCES:
        p = _HERE / name
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return files


def _kernel_source_digest() -> str:
    h = _hashlib.sha256()
    for f in _kernel_source_files():
        h.update(str(f.relative_to(_HERE)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _default_numba_cache_dir() -> str:
    base = _os.environ.get("XDG_CACHE_HOME") or str(_Path.home() / ".cache")
    return str(_Path(base) / "arrival-engine" / "numba" / _kernel_source_digest())


_os.environ.setdefault("NUMBA_CACHE_DIR", _default_numba_cache_dir())

__version__ = "0.1.0"


def code_version() -> str:
    """What the engine's code contributes to its output: the package version and the digest
    of every kernel source (the digest that names the Numba cache). The Dagster assets carry
    it as their ``code_version``, so a kernel change marks every materialised partition
    stale."""
    return f"{__version__}+{_kernel_source_digest()}"


# The reading API (engine_core/read.py), imported on first use so that `import engine_core`
# stays light for the CLI and the kernels.
_READ_API = ("read_arrivals", "read_bucket_counts", "validated_files")


def __getattr__(name: str):
    if name in _READ_API:
        from engine_core import read

        return getattr(read, name)
    raise AttributeError(f"module 'engine_core' has no attribute {name!r}")


__all__ = ["__version__", "code_version", *_READ_API]
