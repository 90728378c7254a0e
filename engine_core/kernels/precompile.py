"""Compile kernels in background processes while the run's own process compiles the rest.

With an empty Numba cache a first run compiles every kernel it uses — the S1–S4 kernels at
the warm-up, the validation kernels (row scan, reference arrival kernel, id and moment
kernels) when the checks first call them — one after another, in one process. Compiling is
single-threaded, and these kernels share nothing, so :func:`start` spreads them over the
machine: ``python -m engine_core.kernels.precompile kernels`` compiles the S2 and S3
kernels, ``... validation`` every signature listed in ``validation_signatures.json``, each
into the on-disk cache, leaving a marker there when done; meanwhile the run compiles the
S4 kernel, the largest. :func:`wait` — before the S2/S3 warm-up, before any rule runs —
waits for a group, so the run loads what it compiled instead of compiling it again. With
the cache filled (markers present) nothing is launched.

The validation signature list is generated, never written by hand::

    python -m engine_core.pipeline.signatures record

runs the warm-up and then a tiny-world run with validation and writes the signatures compiled
after the warm-up (a run is a pipeline matter, so the recorder lives there).
``tests/core/test_precompile.py`` fails, naming the kernel, when a run compiles a validation
signature the list lacks.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from numba.core import types
from numba.core.registry import CPUDispatcher

from engine_core.kernels.jit import warm_up

SIGNATURES = Path(__file__).with_name("validation_signatures.json")
# background groups: kernels of the warm-up (the rest, "realise_groups", stays in the run)
BACKGROUND_KERNELS = ("latent_field", "target_intensity", "bucket_counts")
GROUPS = ("kernels", "validation")
MARKER = "validation-kernels.done"
_MARKERS = {"kernels": "s2-s3-kernels.done", "validation": MARKER}

_children: dict[str, subprocess.Popen] = {}
launched: set[str] = set()  # at most one launch per group and process, even if it failed


def marker_path(cache_dir: str | Path, group: str) -> Path:
    return Path(cache_dir) / _MARKERS[group]


def _marker(group: str) -> Path:
    return marker_path(os.environ["NUMBA_CACHE_DIR"], group)


def start() -> set[str]:
    """Launch the background compile of each group whose marker is not in the cache (and
    that is not running already); return the groups running."""
    for group in GROUPS:
        if group in launched or _marker(group).exists():
            continue
        launched.add(group)
        try:
            _children[group] = subprocess.Popen(
                [sys.executable, "-m", "engine_core.kernels.precompile", group],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        except OSError:  # no process to spare: the kernels compile on first use instead
            break
    return set(_children)


def wait(group: str) -> float:
    """Wait for the background compile of ``group``, if one runs; return the seconds waited.
    A compile that failed only costs the run its own compile at first use."""
    child = _children.pop(group, None)
    if child is None:
        return 0.0
    t0 = time.perf_counter()
    child.wait()
    return time.perf_counter() - t0


def type_spec(t) -> object:
    """A JSON-able description of one Numba argument type (the kinds the checks use)."""
    if isinstance(t, types.Array):
        if not t.aligned:
            raise ValueError(f"unaligned array type {t} cannot be listed")
        return {"array": str(t.dtype), "ndim": t.ndim, "layout": t.layout,
                "readonly": not t.mutable}
    if isinstance(t, types.IntegerLiteral):
        return {"literal_int": t.literal_value}
    if isinstance(t, types.Boolean | types.Integer | types.Float):
        return str(t)
    raise ValueError(f"argument type {t} ({type(t).__name__}) cannot be listed")


def _scalar(name: str):
    t = getattr(types, name, None)
    if not isinstance(t, types.Boolean | types.Integer | types.Float):
        raise ValueError(f"{SIGNATURES.name}: unknown scalar type {name!r}")
    return t


def from_spec(spec: object):
    """The Numba type a :func:`type_spec` describes."""
    if isinstance(spec, str):
        return _scalar(spec)
    if isinstance(spec, dict) and "array" in spec:
        return types.Array(_scalar(spec["array"]), int(spec["ndim"]), str(spec["layout"]),
                           readonly=bool(spec["readonly"]))
    if isinstance(spec, dict) and "literal_int" in spec:
        return types.literal(int(spec["literal_int"]))
    raise ValueError(f"{SIGNATURES.name}: unreadable argument type {spec!r}")


def load_signatures() -> list[tuple[str, str, tuple]]:
    """(module, function, numba argument types) per entry of the signature list."""
    entries = json.loads(SIGNATURES.read_text())["signatures"]
    return [(e["module"], e["function"], tuple(from_spec(a) for a in e["args"]))
            for e in entries]


def compile_all() -> int:
    """Compile (or load) every listed signature into the cache; return how many."""
    sigs = load_signatures()
    for module, name, args in sigs:
        getattr(importlib.import_module(module), name).compile(args)
    return len(sigs)


def dispatchers() -> dict[tuple[str, str], object]:
    found = {}
    for mod_name, mod in list(sys.modules.items()):
        if not mod_name.startswith("engine_core") or mod is None:
            continue
        for obj in list(vars(mod).values()):
            if isinstance(obj, CPUDispatcher):
                found[(obj.py_func.__module__, obj.py_func.__qualname__)] = obj
    return found


def compiled_signatures() -> set[tuple[str, str, str]]:
    """(module, function, signature) of every engine kernel specialised in this process."""
    return {(m, n, str(sig)) for (m, n), d in dispatchers().items() for sig in d.signatures}


def compiled_here() -> set[tuple[str, str, str]]:
    """The subset of :func:`compiled_signatures` this process compiled (cache misses)."""
    return {(m, n, str(sig)) for (m, n), d in dispatchers().items()
            for sig, k in d.stats.cache_misses.items() if k}


def main(argv: list[str]) -> int:
    if argv[:1] == ["kernels"]:
        warm_up(names=BACKGROUND_KERNELS)
    elif argv[:1] == ["validation"]:
        compile_all()
    else:
        print("usage: python -m engine_core.kernels.precompile kernels|validation",
              file=sys.stderr)
        return 2
    marker = _marker(argv[0])
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("compiled\n")
    return 0


if __name__ == "__main__":
    # run in the module the engine imports, so that state such as launched is shared
    from engine_core.kernels.precompile import main as _main

    sys.exit(_main(sys.argv[1:]))
