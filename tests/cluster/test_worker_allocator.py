"""A worker's allocator: dask's nanny sets ``MALLOC_TRIM_THRESHOLD_``, which turns glibc's
dynamic mmap threshold off, so every chunk-sized buffer is a fresh mapping whose pages the
kernel faults in and zeroes. ``tune_allocator`` restores the steady state a plain process
reaches by itself; the page faults of a loop of chunk-sized allocations show the difference."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import json, resource, sys
import numpy as np
from engine_core.io.memory import tune_allocator
tuned = tune_allocator() if sys.argv[1] == "tune" else False
np.ones(3_000_000).sum()  # one chunk column (24 MB) before counting: the first is free
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    a = np.ones(3_000_000)  # allocated, every page written, freed: as each S4 chunk does
    a.sum()
    del a
print(json.dumps({"tuned": tuned,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(mode: str, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         timeout=120, check=True, env={**os.environ, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_worker_reuses_chunk_buffers_instead_of_faulting_them_in_again():
    dask_env = {"MALLOC_TRIM_THRESHOLD_": "65536"}  # what a dask nanny gives its worker
    untuned = _probe("plain", **dask_env)
    tuned = _probe("tune", **dask_env)
    opted_out = _probe("tune", ENGINE_WORKER_MALLOC="dask", **dask_env)
    assert tuned["tuned"] and not opted_out["tuned"]
    # untuned: each of the 40 buffers is mapped afresh and faulted in again (how many faults
    # a buffer costs depends on the kernel's huge pages and fault-around: at least one)
    assert untuned["faults"] >= 40, untuned
    assert opted_out["faults"] >= 40, opted_out
    # tuned: the heap keeps the freed buffer and hands it back, next to no new page
    assert tuned["faults"] * 10 <= untuned["faults"], (tuned, untuned)
