"""Atomic publish: write into a staging directory, fsync, then swap it into place.

Readers see either the previous complete partition or the new complete one: never a mix, never
a half-written file and, where the kernel can exchange two directories atomically (Linux
``renameat2(RENAME_EXCHANGE)``: ext4, xfs, btrfs, tmpfs ...), never a missing one. Elsewhere the
previous partition is renamed aside and the new one renamed in, so a reader can find the
partition absent for that instant, never partial (docs/reliability.md).

A crash leaves at most a staging directory under ``_staging`` (outside every dataset). Every
live publisher holds an exclusive ``flock`` on its staging directory, so the next publish of any
partition removes the staging directories nobody holds (their writer died). Creating a staging
directory takes ``_staging/.sweep.lock`` shared and sweeping takes it exclusive, so a sweeper
never mistakes a directory created an instant ago, not yet locked, for an abandoned one.

Concurrent publishers of the same partition serialise the swap on a lock file next to it; since
their bytes are identical by construction (determinism), whichever finishes last simply wins.
An ``OSError`` while writing or publishing (full disk, read-only or vanished storage) becomes
``EngineError("STORAGE_WRITE_FAILED")``; the staging directory is removed and the partition is
left as it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from pyarrow.fs import FileSelector, FileSystem, FileType, LocalFileSystem

from engine_core.errors import EngineError
from engine_core.io.storage import Storage

# Staging directories whose lock state cannot be read (a filesystem without flock) are
# removed only once they are this old.
STALE_STAGING_S = 24 * 3600
SWEEP_LOCK = ".sweep.lock"
# Written last into each partition published to an object store (no rename there).
PUBLISHED_MARKER = "_published.json"
_AT_FDCWD = -100  # <fcntl.h>
_RENAME_EXCHANGE = 2  # <linux/fs.h>
# Threads removing replaced partitions in the background (publish_dir, wait_discards).
_DISCARDS: list[threading.Thread] = []


def sync_file(path: str) -> None:
    """Flush one file's data to disk. A writer that calls it on each file it finishes spreads
    the flushing over its run (the disk works while the CPU computes) instead of leaving it
    all to the publish, which then fsyncs files that are already clean."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: str) -> None:
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            sync_file(os.path.join(dirpath, name))
        _fsync_dir(dirpath)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _flocked(lock_path: str, operation: int) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def _partition_lock(final_dir: str) -> Iterator[None]:
    parent = os.path.dirname(final_dir)
    os.makedirs(parent, exist_ok=True)
    with _flocked(os.path.join(parent, f".{os.path.basename(final_dir)}.lock"), fcntl.LOCK_EX):
        yield


@functools.cache
def _renameat2() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not glibc >= 2.28 / not Linux
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: str, b: str) -> bool:
    """Swap two existing directories atomically; False when the platform or the filesystem
    cannot (the caller then falls back to two renames)."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


def _is_held(path: str) -> bool:
    """Whether a live publisher holds ``path`` (its staging directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no flock here: fall back to age
        return time.time() - os.fstat(fd).st_mtime <= STALE_STAGING_S
    finally:
        os.close(fd)
    return False


def _sweep_abandoned(staging_root: str) -> None:
    try:
        entries = [e for e in os.listdir(staging_root) if e != SWEEP_LOCK]
    except FileNotFoundError:
        return
    if not entries:
        return
    with _flocked(os.path.join(staging_root, SWEEP_LOCK), fcntl.LOCK_EX):
        for name in entries:
            path = os.path.join(staging_root, name)
            try:
                if not _is_held(path):
                    shutil.rmtree(path, ignore_errors=True)
            except FileNotFoundError:
                pass


def _create_stage(staging_root: str) -> tuple[str, int]:
    """A fresh staging directory and the descriptor holding its lock (close it to release)."""
    os.makedirs(staging_root, exist_ok=True)
    with _flocked(os.path.join(staging_root, SWEEP_LOCK), fcntl.LOCK_SH):
        stage = os.path.join(staging_root, uuid.uuid4().hex)
        os.mkdir(stage)
        fd = os.open(stage, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
    return stage, fd


def _swap_in(stage: str, final_dir: str, staging_root: str) -> str | None:
    """Put ``stage`` in place of ``final_dir``; return the path now holding the previous
    partition (to delete), if there was one."""
    with _partition_lock(final_dir):
        old = None
        if os.path.isdir(final_dir):
            if _exchange(stage, final_dir):
                old = stage
            else:
                old = os.path.join(staging_root, f"{uuid.uuid4().hex}.old")
                os.rename(final_dir, old)
                try:
                    os.rename(stage, final_dir)
                except OSError:
                    os.rename(old, final_dir)  # put the previous partition back
                    raise
        else:
            os.rename(stage, final_dir)
        _fsync_dir(os.path.dirname(final_dir))
    return old


def _write_failed(final_dir: str, exc: OSError, object_store: bool = False) -> EngineError:
    parts = final_dir.rstrip("/").split("/")
    dataset = parts[-3] if len(parts) >= 3 and parts[-2].startswith("scenario=") else None
    outcome = (
        f"The partition has no {PUBLISHED_MARKER} marker until a re-run completes"
        if object_store
        else "Nothing partial was published (the previous partition, if any, is unchanged)"
    )
    return EngineError(
        "STORAGE_WRITE_FAILED",
        f"could not write partition {final_dir}: {exc}. {outcome}; free space or fix the "
        "storage and re-run",
        table=dataset,
        key=final_dir,
    )


@contextlib.contextmanager
def publish_dir(storage: Storage, staging_root: str, final_dir: str,
                discard_in_background: bool = False,
                remote_copies: dict[str, str] | None = None) -> Iterator[str]:
    """Yield a fresh staging directory; on clean exit it replaces ``final_dir`` atomically.

    On an object store, ``remote_copies`` (filled by the block, name -> object of the same
    store) adds files that are copied server-side into the partition instead of uploaded
    from the stage (a local root takes no copies: move the files into the stage).

    On an exception the staging directory is removed and ``final_dir`` is left as it was; an
    ``OSError`` is reported as ``STORAGE_WRITE_FAILED``. The replaced partition is removed
    before returning or, with ``discard_in_background``, by a thread (``wait_discards`` joins
    it; the interpreter waits for it at exit; if the process dies first, the next publish
    sweeps what is left).
    """
    if not storage.is_local:
        try:
            copies = {} if remote_copies is None else remote_copies  # the block fills it
            yield from _publish_object_store(storage, staging_root, final_dir, copies)
        except OSError as exc:
            raise _write_failed(final_dir, exc, object_store=True) from exc
        return
    try:
        _sweep_abandoned(staging_root)
        stage, stage_fd = _create_stage(staging_root)
    except OSError as exc:
        raise EngineError(
            "STORAGE_NOT_WRITABLE",
            f"cannot create a staging directory under {staging_root}: {exc.strerror}",
            key=staging_root,
        ) from exc
    try:
        yield stage
        if remote_copies:
            raise ValueError("a local publish takes no remote copies: move them into the stage")
        _fsync_tree(stage)
        old = _swap_in(stage, final_dir, staging_root)
    except BaseException as exc:
        shutil.rmtree(stage, ignore_errors=True)
        os.close(stage_fd)
        if isinstance(exc, OSError):
            raise _write_failed(final_dir, exc) from exc
        raise
    os.close(stage_fd)
    if old is None:
        return
    if discard_in_background:
        t = threading.Thread(target=shutil.rmtree, args=(old,), kwargs={"ignore_errors": True},
                             name="discard-replaced")
        t.start()
        _DISCARDS.append(t)
    else:
        shutil.rmtree(old, ignore_errors=True)


def wait_discards() -> None:
    """Wait until every replaced partition handed to a background removal is gone."""
    while _DISCARDS:
        _DISCARDS.pop().join()


def _publish_object_store(storage: Storage, staging_root: str, final_dir: str,
                          copies: dict[str, str]):
    """Publish to an object store, which has no directory rename.

    The partition is staged on local disk (and, for files already in the store, named in
    ``copies``), then: (1) its ``_published.json`` marker is withdrawn, (2) every file is
    uploaded or copied server-side (one PUT or one CopyObject each, so no reader ever sees
    a half-written object), (3) objects of an earlier publish that the new one does not
    contain are deleted, (4) the marker, listing every file with its size, is written last.
    A reader that gates on the marker sees the previous complete partition or the new one,
    never a mix; a crash or an upload error leaves the partition without a marker until a
    re-run completes. Objects are overwritten in place: a re-run of a partition has
    identical bytes (determinism), so a reader that does not gate still reads whole,
    identical objects.
    """
    import tempfile

    stage = tempfile.mkdtemp(prefix="arrival-engine-stage-")
    try:
        yield stage
        local = set(os.listdir(stage))
        clash = local & copies.keys()
        if clash:
            raise ValueError(f"files both staged and copied: {sorted(clash)}")
        names = sorted(local | copies.keys())
        marker = f"{final_dir}/{PUBLISHED_MARKER}"
        if storage.exists(marker):
            storage.fs.delete_file(marker)
        for name in names:
            if name in copies:
                storage.fs.copy_file(copies[name], f"{final_dir}/{name}")
                continue
            with (
                open(os.path.join(stage, name), "rb") as src,
                storage.fs.open_output_stream(f"{final_dir}/{name}") as dst,
            ):
                shutil.copyfileobj(src, dst, 8 << 20)
        keep = {*names, PUBLISHED_MARKER}
        sizes = {}
        listing = storage.fs.get_file_info(FileSelector(final_dir, allow_not_found=True))
        for info in listing:
            if info.type != FileType.File:
                continue
            if info.base_name in keep:
                sizes[info.base_name] = info.size
            else:
                storage.fs.delete_file(f"{final_dir}/{info.base_name}")
        missing = [n for n in names if n not in sizes]
        if missing:
            raise OSError(f"objects missing right after their upload: {missing}")
        with storage.fs.open_output_stream(marker) as dst:
            dst.write(json.dumps({"files": names, "bytes": sizes}, sort_keys=True).encode())
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_json_atomic(path: str, payload: Any) -> None:
    """Write a small JSON file in the staging directory of a publish (or anywhere local)."""
    _write_local_atomic(path, (json.dumps(payload, indent=2, sort_keys=True, default=str)
                               + "\n").encode("utf-8"))


def _write_local_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_small_file(fs: FileSystem, path: str, data: bytes) -> None:
    """A small file outside every dataset (a verdict memo, the fidelity tallies) written
    whole: on a local disk through a temporary file and a rename, so that a reader sees the
    old file or the new one; on an object store as one upload."""
    if isinstance(fs, LocalFileSystem):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _write_local_atomic(path, data)
    else:
        with fs.open_output_stream(path) as out:
            out.write(data)


def read_json(storage: Storage, path: str) -> Any:
    with storage.fs.open_input_stream(path) as fh:
        return json.loads(fh.read().decode("utf-8"))
