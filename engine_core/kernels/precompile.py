"""Compile kernels in background processes while the run's own process compiles the rest.

With an empty Numba cache a first run compiles every kernel it uses — the S1–S4 kernels at
the warm-up, the validation kernels (row scan, reference arrival kernel, id and moment
kernels) when the checks first call them — one after another, in one process. Compiling is
single-threaded, and these kernels share nothing, so :func:`start` spreads them over the
machine: ``python -m engine_core.kernels.precompile kernels`` compiles the S2 and S3
kernels, ``... validation`` every signature listed in ``validation_signatures.txt``, each
into the on-disk cache, leaving a marker there when done; meanwhile the run compiles the
S4 kernel, the largest. :func:`wait` — before the S2/S3 warm-up, before any rule runs —
waits for a group, so the run loads what it compiled instead of compiling it again. With
the cache filled (markers present) nothing is launched.

The validation signature list is generated, never written by hand::

    python -m engine_core.kernels.precompile record

runs the warm-up and then a tiny-world run with validation in this process and writes the
signatures compiled after the warm-up. ``tests/core/test_precompile.py`` fails, naming the
kernel, when a run compiles a validation signature the list lacks.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIGNATURES = Path(__file__).with_name("validation_signatures.txt")
# background groups: kernels of the warm-up (the rest, "realise_groups", stays in the run)
BACKGROUND_KERNELS = ("latent_field", "target_intensity", "bucket_counts")
GROUPS = ("kernels", "validation")
MARKER = "validation-kernels.done"
_MARKERS = {"kernels": "s2-s3-kernels.done", "validation": MARKER}

_children: dict[str, subprocess.Popen] = {}
_launched: set[str] = set()  # at most one launch per group and process, even if it failed


def marker_path(cache_dir: str | Path, group: str) -> Path:
    return Path(cache_dir) / _MARKERS[group]


def _marker(group: str) -> Path:
    return marker_path(os.environ["NUMBA_CACHE_DIR"], group)


def start() -> set[str]:
    """Launch the background compile of each group whose marker is not in the cache (and
    that is not running already); return the groups running."""
    for group in GROUPS:
        if group in _launched or _marker(group).exists():
            continue
        _launched.add(group)
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


def _types_namespace() -> dict:
    from numba.core import types

    ns = dict(vars(types))
    ns["bool"] = types.boolean
    return ns


def load_signatures() -> list[tuple[str, str, tuple]]:
    """(module, function, numba argument types) per line of the signature list."""
    ns = _types_namespace()
    out = []
    for line in SIGNATURES.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        module, name, sig = line.split("\t")
        # signatures are numba type reprs; numba itself parses signature strings this way
        args = eval(sig.replace("Literal[int](", "literal("), {}, ns)  # noqa: S307
        out.append((module, name, args))
    return out


def compile_all() -> int:
    """Compile (or load) every listed signature into the cache; return how many."""
    sigs = load_signatures()
    for module, name, args in sigs:
        getattr(importlib.import_module(module), name).compile(args)
    return len(sigs)


def _dispatchers() -> dict[tuple[str, str], object]:
    from numba.core.registry import CPUDispatcher

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
    return {(m, n, str(sig)) for (m, n), d in _dispatchers().items() for sig in d.signatures}


def _compiled_here() -> set[tuple[str, str, str]]:
    """The subset of :func:`compiled_signatures` this process compiled (cache misses)."""
    return {(m, n, str(sig)) for (m, n), d in _dispatchers().items()
            for sig, k in d.stats.cache_misses.items() if k}


def tiny_run_after_warm_up(out_dir: str) -> tuple[list, list]:
    """Warm up, then run the tiny world (S1–S5) into ``out_dir``; return the signatures the
    run specialised after the warm-up and, of those, the ones it had to compile."""
    import datetime as dt

    from engine_core.kernels.jit import warm_up
    from engine_core.pipeline import Engine, RunConfig
    from engine_core.pipeline.run import run_all

    warm_up()
    before = compiled_signatures()
    compiled_before = _compiled_here()
    cfg = RunConfig(world="tiny", scenario="baseline",
                    start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                    end=dt.datetime(2026, 1, 8, tzinfo=dt.UTC), storage_root=out_dir, seed=42)
    run_all(Engine(cfg))
    return (sorted(compiled_signatures() - before),
            sorted(_compiled_here() - compiled_before))


def record() -> int:
    with tempfile.TemporaryDirectory(prefix="arrival-precompile-") as tmp:
        sigs, _ = tiny_run_after_warm_up(tmp)
    SIGNATURES.write_text(
        "# Generated by `python -m engine_core.kernels.precompile record`: the kernel\n"
        "# signatures a run compiles for validation after the S1-S4 warm-up.\n"
        + "".join(f"{m}\t{n}\t{s}\n" for m, n, s in sigs))
    return len(sigs)


def main(argv: list[str]) -> int:
    if argv[:1] == ["record"]:
        print(f"{record()} signatures written to {SIGNATURES}")
        return 0
    if argv[:1] == ["kernels"]:
        from engine_core.kernels.jit import warm_up

        warm_up(names=BACKGROUND_KERNELS)
    elif argv[:1] == ["validation"]:
        compile_all()
    else:
        print("usage: python -m engine_core.kernels.precompile kernels|validation|record",
              file=sys.stderr)
        return 2
    marker = _marker(argv[0])
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("compiled\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
