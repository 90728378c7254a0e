"""``chunk_heap``: during a chunked pass glibc's heap keeps what one chunk frees for the next,
instead of handing it to the kernel and faulting fresh pages in again; after the pass the
steady-state thresholds are back and ``release_memory`` trims the heap. Each case runs in a
fresh process (the C library's thresholds are process-wide)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from engine_core.io.memory import _glibc

PROBE = r"""
import json, resource, sys
import numpy as np
from engine_core.io.memory import chunk_heap, release_memory

def rss_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024

def chunk():
    # as an S4 chunk: its columns allocated together, written, freed once written
    cols = [np.ones(2_000_000) for _ in range(12)]  # 12 x 16 MB
    return sum(float(c[-1]) for c in cols)

def faults_of(rounds):
    chunk()  # the first chunk faults its pages in under any setting
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        chunk()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

if sys.argv[1] == "pass":
    with chunk_heap() as set_:
        faults = faults_of(10)
        kept = rss_mb()
else:
    set_, faults, kept = False, faults_of(10), rss_mb()
release_memory()
print(json.dumps({"set": set_, "faults": faults, "kept_mb": kept, "after_mb": rss_mb()}))
"""


def _probe(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "ENGINE_WORKER"))}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         timeout=120, check=True, env={**clean, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(_glibc("mallopt") is None, reason="glibc's mallopt")
def test_a_pass_reuses_the_last_chunks_pages_and_gives_them_back_after():
    plain = _probe("plain")
    passing = _probe("pass")
    opted_out = _probe("pass", ENGINE_WORKER_MALLOC="dask")
    assert passing["set"] and not plain["set"] and not opted_out["set"]
    # glibc's defaults trim the freed 192 MB after every chunk: ten chunks fault their pages
    # in again (at least one fault per chunk, whatever the page size)
    assert plain["faults"] >= 10, plain
    assert opted_out["faults"] >= 10, opted_out
    # in the pass the heap keeps them: next to no new page
    assert passing["faults"] * 10 <= plain["faults"], (passing, plain)
    # what the pass kept (a chunk's 192 MB) is handed back once it ends
    assert passing["kept_mb"] - passing["after_mb"] > 100, passing


@pytest.mark.skipif(_glibc("mallopt") is None, reason="glibc's mallopt")
def test_overlapping_passes_keep_the_pass_thresholds_until_the_last_ends(monkeypatch):
    from engine_core.io import memory

    calls: list[tuple[int, int]] = []
    monkeypatch.delenv("ENGINE_WORKER_MALLOC", raising=False)
    real = memory._thresholds
    monkeypatch.setattr(memory, "_thresholds",
                        lambda m, t: calls.append((m, t)) or real(m, t))
    with memory.chunk_heap() as first:
        with memory.chunk_heap() as second:  # another shard's pass in a worker's thread
            assert memory._PASSES.users == 2
        assert calls == [(memory.PASS_MMAP_THRESHOLD, memory.PASS_TRIM_THRESHOLD)]
    assert first and second and memory._PASSES.users == 0
    # the steady state once, after the last pass
    assert calls[-1] == (memory.MMAP_THRESHOLD, memory.TRIM_THRESHOLD) and len(calls) == 2
    monkeypatch.setenv("ENGINE_WORKER_MALLOC", "dask")
    with memory.chunk_heap() as kept:
        assert not kept and memory._PASSES.users == 0
