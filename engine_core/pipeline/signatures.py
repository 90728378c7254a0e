"""The list of validation kernel signatures that a first run compiles in the background.

``python -m engine_core.pipeline.signatures record`` regenerates
``engine_core/kernels/validation_signatures.json``: in a process of its own with an empty
Numba cache it warms the S1–S4 kernels up, runs a tiny world with validation and lists the
signatures specialised after the warm-up. tests/core/test_precompile.py fails, naming the
kernel, when a run compiles a validation signature the list lacks.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from engine_core.kernels import precompile
from engine_core.pipeline.jit import warm_up
from engine_core.pipeline.run import Run, RunConfig, run_all


def tiny_run_after_warm_up(out_dir: str) -> tuple[list, list]:
    """Warm up, then run the tiny world (S1–S5) into ``out_dir``; return the signatures the
    run specialised after the warm-up and, of those, the ones it had to compile."""
    warm_up()
    before = precompile.compiled_signatures()
    compiled_before = precompile.compiled_here()
    cfg = RunConfig(world="tiny", scenario="baseline",
                    start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                    end=dt.datetime(2026, 1, 8, tzinfo=dt.UTC), storage_root=out_dir, seed=42)
    run_all(Run.open(cfg))
    return (sorted(precompile.compiled_signatures() - before),
            sorted(precompile.compiled_here() - compiled_before))


def record() -> None:
    """Regenerate the list in a process of its own with an empty Numba cache: a kernel
    loaded from the cache does not specialise the kernels it calls, so a warm cache would
    leave those out (and so would a background compile the run waits for, which this
    process does not launch)."""
    with tempfile.TemporaryDirectory(prefix="arrival-precompile-") as tmp:
        env = {**os.environ, "NUMBA_CACHE_DIR": str(Path(tmp) / "numba")}
        subprocess.run([sys.executable, "-m", "engine_core.pipeline.signatures", "_record"],
                       env=env, check=True)


def _record_here() -> int:
    # compile everything in this process, nothing in the background
    precompile.launched.update(precompile.GROUPS)
    with tempfile.TemporaryDirectory(prefix="arrival-precompile-") as tmp:
        sigs, _ = tiny_run_after_warm_up(tmp)
    types_of = {(m, n, str(sig)): sig for (m, n), d in precompile.dispatchers().items()
                for sig in d.signatures}
    entries = [{"module": m, "function": n,
                "args": [precompile.type_spec(t) for t in types_of[m, n, s]]}
               for m, n, s in sigs]
    head = ('{"generated_by": "python -m engine_core.pipeline.signatures record",\n'
            ' "about": "kernel signatures a run compiles for validation after the S1-S4 '
            'warm-up",\n "signatures": [\n')
    body = ",\n".join(f"  {json.dumps(e)}" for e in entries)
    precompile.SIGNATURES.write_text(head + body + "\n]}\n")
    return len(entries)


def main(argv: list[str]) -> int:
    if argv[:1] == ["record"]:
        record()
        return 0
    if argv[:1] == ["_record"]:
        print(f"{_record_here()} signatures written to {precompile.SIGNATURES}")
        return 0
    print("usage: python -m engine_core.pipeline.signatures record", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
