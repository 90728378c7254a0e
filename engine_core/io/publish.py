"""Atomic publish: write into a staging directory, fsync, then rename into place.

Readers see either the previous complete partition or the new complete one, never a mix and
never a half-written file. A crash leaves at most a staging directory under ``_staging``
(outside every dataset), which the next publish of any partition sweeps when stale.
Concurrent publishers of the same partition serialise on a lock file next to it; since their
bytes are identical by construction (determinism), whichever finishes last simply wins.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

from engine_core.errors import EngineError
from engine_core.io.storage import Storage

STALE_STAGING_S = 24 * 3600


def _fsync_tree(path: str) -> None:
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(dirpath)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _partition_lock(final_dir: str) -> Iterator[None]:
    parent = os.path.dirname(final_dir)
    os.makedirs(parent, exist_ok=True)
    lock_path = os.path.join(parent, f".{os.path.basename(final_dir)}.lock")
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _sweep_stale(staging_root: str) -> None:
    try:
        entries = os.listdir(staging_root)
    except FileNotFoundError:
        return
    now = time.time()
    for name in entries:
        path = os.path.join(staging_root, name)
        try:
            if now - os.stat(path).st_mtime > STALE_STAGING_S:
                shutil.rmtree(path, ignore_errors=True)
        except FileNotFoundError:
            pass


@contextlib.contextmanager
def publish_dir(storage: Storage, staging_root: str, final_dir: str) -> Iterator[str]:
    """Yield a fresh staging directory; on clean exit it replaces ``final_dir`` atomically.

    On an exception the staging directory is removed and ``final_dir`` is left as it was.
    """
    if not storage.is_local:
        yield from _publish_object_store(storage, staging_root, final_dir)
        return
    _sweep_stale(staging_root)
    stage = os.path.join(staging_root, f"{uuid.uuid4().hex}")
    try:
        os.makedirs(stage)
    except OSError as exc:
        raise EngineError(
            "STORAGE_NOT_WRITABLE", f"cannot create staging directory {stage}: {exc.strerror}",
            key=stage,
        ) from exc
    try:
        yield stage
        _fsync_tree(stage)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    with _partition_lock(final_dir):
        old = None
        if os.path.exists(final_dir):
            old = os.path.join(staging_root, f"{uuid.uuid4().hex}.old")
            os.rename(final_dir, old)
        os.rename(stage, final_dir)
        _fsync_dir(os.path.dirname(final_dir))
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _publish_object_store(storage: Storage, staging_root: str, final_dir: str):
    """Object stores have no atomic directory rename: stage locally, upload each file, and
    write the ``_published.json`` marker last; readers gate on the marker (docs/operations.md).
    """
    import tempfile

    stage = tempfile.mkdtemp(prefix="arrival-engine-stage-")
    try:
        yield stage
        storage.fs.delete_dir_contents(final_dir, missing_dir_ok=True)
        storage.fs.create_dir(final_dir, recursive=True)
        names = sorted(os.listdir(stage))
        for name in names:
            with open(os.path.join(stage, name), "rb") as src, storage.fs.open_output_stream(
                f"{final_dir}/{name}"
            ) as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
        with storage.fs.open_output_stream(f"{final_dir}/_published.json") as dst:
            dst.write(json.dumps({"files": names}).encode())
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_json_atomic(path: str, payload: Any) -> None:
    """Write a small JSON file in the staging directory of a publish (or anywhere local)."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(storage: Storage, path: str) -> Any:
    with storage.fs.open_input_stream(path) as fh:
        return json.loads(fh.read().decode("utf-8"))
