"""arrival engine core: deterministic arrival-event generation, no Dagster inside.

Numba's on-disk cache must live somewhere writable even when the source tree is read-only
(site-packages, a container image): unless the user set NUMBA_CACHE_DIR we point it at a
per-user cache directory before any kernel module imports numba.
"""

from __future__ import annotations

import os as _os
from pathlib import Path as _Path


def _default_numba_cache_dir() -> str:
    base = _os.environ.get("XDG_CACHE_HOME") or str(_Path.home() / ".cache")
    return str(_Path(base) / "arrival-engine" / "numba")


_os.environ.setdefault("NUMBA_CACHE_DIR", _default_numba_cache_dir())

__version__ = "0.1.0"
