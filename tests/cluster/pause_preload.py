"""Worker preload of the cluster tests (``dask worker --preload``): once armed (a file
``armed`` in ``$ENGINE_TEST_PAUSE_DIR``), the first S4 part file written by any worker is
followed by a pause, and the pausing worker's pid is left in ``paused`` — the middle of a
shard, for a test to kill that worker or the scheduler. Never pauses twice."""

from __future__ import annotations

import os
import time

from engine_core.pipeline import s4_events

# dask imports a preload twice in a worker (nanny, then worker): wrap the original only once
_write_chunk = getattr(s4_events, "_unpaused_write_chunk", s4_events._write_chunk)
s4_events._unpaused_write_chunk = _write_chunk


def _write_chunk_then_pause(ctx, out, path, sync):
    _write_chunk(ctx, out, path, sync)
    pause_dir = os.environ.get("ENGINE_TEST_PAUSE_DIR", "")
    if not os.path.exists(os.path.join(pause_dir, "armed")):
        return
    try:  # exactly one pause: the first to create the claim pauses
        fd = os.open(os.path.join(pause_dir, "claim"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    tmp = os.path.join(pause_dir, "paused.tmp")
    with open(tmp, "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(tmp, os.path.join(pause_dir, "paused"))
    time.sleep(120)


s4_events._write_chunk = _write_chunk_then_pause
