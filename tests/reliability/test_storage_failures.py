"""A write that fails half-way (full disk, I/O error, a failed rename) ends with
``STORAGE_WRITE_FAILED`` and leaves nothing partial: every visible partition is complete, the
previous partition (if any) is unchanged and the staging area holds no leftovers."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import engine_core.io.publish as publish
from engine_core import schemas
from engine_core.errors import EngineError
from engine_core.io import Storage, publish_dir
from tests.reliability.catalogue import mount_tmpfs, unmount
from tests.reliability.conftest import dataset_digest, good_run_argv, run_cli, tree_digest


def _staging_leftovers(root: Path) -> list[str]:
    staging = root / "_staging"
    if not staging.exists():
        return []
    return sorted(p.name for p in staging.iterdir() if p.name != publish.SWEEP_LOCK)


def _assert_visible_subset_of_good(root: Path, good_root: Path) -> None:
    """Every file visible under ``root`` is byte-identical to the good run's file at the same
    place, and every visible partition directory holds exactly the good run's files."""
    got = dataset_digest(root)
    good = dataset_digest(good_root)
    for rel, digest in got.items():
        assert good.get(rel) == digest, f"{rel} differs from the uninterrupted run"
    parts = {rel for rel, d in got.items() if d == "<dir>" and Path(rel).name.startswith("year=")}
    for part in parts:
        mine = {r for r in got if r.startswith(part + "/")}
        theirs = {r for r in good if r.startswith(part + "/")}
        assert mine == theirs, f"partition {part} is incomplete: {sorted(theirs - mine)}"


def test_full_disk_on_a_small_tmpfs(tmp_path, good_root):
    """A 2 MiB tmpfs fills up while S4 writes its events (the tiny month needs ~3.3 MB)."""
    mnt = tmp_path / "full"
    if not mount_tmpfs(mnt, "size=2m"):
        pytest.skip("cannot mount a tmpfs here; test_injected_writer_failure covers the path")
    try:
        root = mnt / "data"
        res = run_cli(good_run_argv(root))
        assert res.code == 2, res.stderr
        assert res.error_line.startswith("STORAGE_WRITE_FAILED: "), res.stderr
        assert "No space left on device" in res.error_line
        err = res.summary["error"]
        assert err["code"] == "STORAGE_WRITE_FAILED"
        assert err["table"] == "arrival_events"  # the first write that does not fit
        assert not list(root.rglob("_passed.flag"))
        assert not (Path(err["key"])).exists(), "the failed partition must not be visible"
        _assert_visible_subset_of_good(root, good_root)
        assert _staging_leftovers(root) == []
    finally:
        unmount(mnt)


def _half_written(real_write):
    """A pq.write_table that writes the first half of the file, then fails like a full disk,
    for arrival-event tables only."""

    def write_table(table, where, *args, **kwargs):
        if not table.schema.equals(schemas.ARRIVAL_EVENTS):
            return real_write(table, where, *args, **kwargs)
        sink = pa.BufferOutputStream()
        real_write(table, sink, *args, **kwargs)
        data = sink.getvalue().to_pybytes()
        with open(where, "wb") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))

    return write_table


def test_injected_writer_failure_keeps_the_previous_partition(tmp_path, good_root, monkeypatch):
    root = tmp_path / "data"
    shutil.copytree(good_root, root)
    before = dataset_digest(root)
    monkeypatch.setattr(pq, "write_table", _half_written(pq.write_table))
    res = run_cli(good_run_argv(root))
    assert res.code == 2, res.stderr
    err = res.summary["error"]
    assert err["code"] == "STORAGE_WRITE_FAILED"
    assert err["table"] == "arrival_events"
    assert err["key"].endswith("arrival_events/scenario=baseline/year=2026")
    assert "No space left on device" in err["message"]
    # the old complete partition is still there, byte for byte; its PASS flag was withdrawn
    # when the re-run began republishing (S5 of a successful re-run writes it again)
    flag = next(k for k in before if k.endswith("_passed.flag"))
    assert dataset_digest(root) == {k: v for k, v in before.items() if k != flag}
    assert _staging_leftovers(root) == []


def test_injected_parquet_writer_failure_publishes_nothing_of_s3(tmp_path, monkeypatch):
    real = pq.ParquetWriter.write_table

    def broken(self, table, *args, **kwargs):
        if table.schema.equals(schemas.BUCKET_COUNTS):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", broken)
    root = tmp_path / "data"
    res = run_cli(good_run_argv(root))
    assert res.code == 2, res.stderr
    err = res.summary["error"]
    assert (err["code"], err["table"]) == ("STORAGE_WRITE_FAILED", "bucket_counts")
    published = {p.parent.parent.name for p in root.rglob("year=2026")}
    assert published == {"time_grid", "grouping", "latent_intensity"}
    assert not list(root.rglob("_passed.flag"))
    assert _staging_leftovers(root) == []


# ------------------------------------------------------------------------------ the swap itself
def _publish(storage: Storage, final: str, files: dict[str, bytes]) -> None:
    with publish_dir(storage, storage.join("_staging"), final) as stage:
        for name, data in files.items():
            Path(stage, name).write_bytes(data)


def _read_dir(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_failed_swap_leaves_previous_partition(tmp_path, monkeypatch):
    storage = Storage.open(str(tmp_path / "root"))
    final = storage.join("arrival_events", "scenario=baseline", "year=2026")
    _publish(storage, final, {"part-00000.parquet": b"old"})

    def failing_exchange(a: str, b: str) -> bool:
        raise OSError(errno.EIO, os.strerror(errno.EIO), b)

    monkeypatch.setattr(publish, "_exchange", failing_exchange)
    with pytest.raises(EngineError) as info:
        _publish(storage, final, {"part-00000.parquet": b"new", "part-00001.parquet": b"x"})
    assert info.value.code == "STORAGE_WRITE_FAILED"
    assert info.value.table == "arrival_events"
    assert _read_dir(Path(final)) == {"part-00000.parquet": b"old"}
    assert _staging_leftovers(Path(storage.base)) == []


def test_fallback_without_atomic_exchange(tmp_path, monkeypatch):
    """Where RENAME_EXCHANGE is unavailable the two-rename fallback publishes correctly, and
    a failure of its second rename puts the previous partition back."""
    monkeypatch.setattr(publish, "_exchange", lambda a, b: False)
    storage = Storage.open(str(tmp_path / "root"))
    final = storage.join("bucket_counts", "scenario=baseline", "year=2026")
    _publish(storage, final, {"a": b"1"})
    _publish(storage, final, {"a": b"2", "b": b"3"})
    assert _read_dir(Path(final)) == {"a": b"2", "b": b"3"}

    real_rename = os.rename

    def rename(src, dst):
        if str(dst) == final and "_staging" in str(src) and not str(src).endswith(".old"):
            raise OSError(errno.EIO, os.strerror(errno.EIO), dst)
        return real_rename(src, dst)

    monkeypatch.setattr(publish.os, "rename", rename)
    with pytest.raises(EngineError) as info:
        _publish(storage, final, {"c": b"4"})
    assert info.value.code == "STORAGE_WRITE_FAILED"
    monkeypatch.setattr(publish.os, "rename", real_rename)
    assert _read_dir(Path(final)) == {"a": b"2", "b": b"3"}
    assert _staging_leftovers(Path(storage.base)) == []


def test_exception_in_writer_is_not_masked(tmp_path):
    """Only OSError becomes STORAGE_WRITE_FAILED; other failures keep their own type."""
    storage = Storage.open(str(tmp_path / "root"))
    final = storage.join("time_grid", "scenario=baseline", "year=2026")
    with (
        pytest.raises(ZeroDivisionError),
        publish_dir(storage, storage.join("_staging"), final) as stage,
    ):
        Path(stage, "part").write_bytes(b"x")
        _ = 1 / 0
    assert not Path(final).exists()
    assert _staging_leftovers(Path(storage.base)) == []


def test_abandoned_staging_is_swept_live_staging_is_kept(tmp_path):
    """A staging directory nobody holds (its writer died) goes at the next publish; one whose
    writer is alive (holds the lock) stays, however old."""
    storage = Storage.open(str(tmp_path / "root"))
    staging = Path(storage.join("_staging"))
    staging.mkdir(parents=True)
    dead = staging / "deadbeef"
    dead.mkdir()
    (dead / "part-00000.parquet").write_bytes(b"partial")
    live = staging / "cafebabe"
    live.mkdir()
    os.utime(live, (0, 0))  # very old, but held
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        _publish(storage, storage.join("grouping", "scenario=baseline", "year=2026"), {"a": b""})
        assert not dead.exists()
        assert live.exists()
    finally:
        os.close(fd)
    _publish(storage, storage.join("grouping", "scenario=baseline", "year=2026"), {"a": b""})
    assert _staging_leftovers(Path(storage.base)) == []
    assert tree_digest(Path(storage.base))  # the partition itself is there
