"""Concurrent materialisations of one partition never leave a mixed or corrupt dataset.

Two `arrival-engine run` processes on the same partition and storage root both succeed and
leave exactly the bytes of a single run. Underneath, the publish protocol: concurrent
publishers of one partition serialise the swap on a lock, each swap is one atomic exchange,
so the directory always holds one complete version and never goes missing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import engine_core.io.publish as publish
from engine_core.io import Storage, publish_dir
from tests.reliability.conftest import REPO, dataset_digest, good_run_argv


def test_two_cli_runs_of_one_partition_at_once(tmp_path, good_root):
    root = tmp_path / "data"
    argv = [sys.executable, "-m", "engine_core.cli", *good_run_argv(root)]
    procs = [
        subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    assert dataset_digest(root) == dataset_digest(good_root)
    assert len(list(root.rglob("_passed.flag"))) == 1
    staging = root / "_staging"
    assert sorted(p.name for p in staging.iterdir()) == [publish.SWEEP_LOCK]


VERSIONS = {
    tag: {f"part-{i:05d}.parquet": f"{tag}{i}".encode() * 512 for i in range(n)}
    for tag, n in (("A", 4), ("B", 6))
}


def _publish(storage: Storage, final: str, tag: str, background: bool = False) -> None:
    with publish_dir(storage, storage.join("_staging"), final,
                     discard_in_background=background) as stage:
        for name, data in VERSIONS[tag].items():
            Path(stage, name).write_bytes(data)


def _still_current(final: str, fd: int) -> bool:
    try:
        return os.stat(final).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _version_of(final: str) -> tuple[str | None, int]:
    """(tag of the version a directory descriptor sees, 1 if that version was swapped out
    while being read). Reading through one descriptor pins one directory: a mix of tags there
    would be a mixed dataset, and a directory still at ``final`` after the read (a swapped-out
    directory never comes back) must hold one whole version."""
    fd = os.open(final, os.O_RDONLY | os.O_DIRECTORY)
    try:
        names = os.listdir(fd)
        tags, vanished = set(), 0
        for name in names:
            try:
                with open(name, "rb", opener=lambda p, f: os.open(p, f, dir_fd=fd)) as fh:
                    data = fh.read()
            except FileNotFoundError:  # an old version being removed after its swap
                vanished += 1
                continue
            tag = data[:1].decode()
            assert data == VERSIONS[tag][name], f"torn file {name}"
            tags.add(tag)
        assert len(tags) <= 1, f"mixed dataset: {sorted(tags)} in {sorted(names)}"
        if not _still_current(final, fd):
            return None, 1
        assert vanished == 0, f"{vanished} file(s) vanished from the current partition"
        assert len(tags) == 1, f"empty partition: {names}"
        tag = tags.pop()
        assert sorted(names) == sorted(VERSIONS[tag]), f"partial version {tag}: {names}"
        return tag, 0
    finally:
        os.close(fd)


@pytest.mark.parametrize("background", [False, True], ids=["discard_now", "discard_background"])
@pytest.mark.parametrize("exchange", [True, False], ids=["rename_exchange", "two_renames"])
def test_concurrent_publishers_never_mix(tmp_path, monkeypatch, exchange, background):
    if not exchange:
        monkeypatch.setattr(publish, "_exchange", lambda a, b: False)
    elif publish._renameat2() is None:
        pytest.skip("no renameat2 on this platform")
    storage = Storage.open(str(tmp_path / "root"))
    final = storage.join("arrival_events", "scenario=baseline", "year=2026")
    _publish(storage, final, "A")
    stop = threading.Event()
    seen = {"A": 0, "B": 0, "missing": 0, "gone": 0}
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                try:
                    tag, gone = _version_of(final)
                except FileNotFoundError:
                    seen["missing"] += 1
                    continue
                if tag is not None:
                    seen[tag] += 1
                seen["gone"] += gone
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def writer(tag: str) -> None:
        try:
            for _ in range(60):
                _publish(storage, final, tag, background)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader)]
    threads += [threading.Thread(target=writer, args=(t,)) for t in ("A", "B")]
    for t in threads[1:]:
        t.start()
    threads[0].start()
    for t in threads[1:]:
        t.join()
    stop.set()
    threads[0].join()
    assert not errors, errors
    assert seen["A"] + seen["B"] > 0, seen
    if exchange:
        assert seen["missing"] == 0, seen  # the partition never disappears
    tag, gone = _version_of(final)
    assert tag in ("A", "B") and gone == 0
    publish.wait_discards()
    assert sorted(p.name for p in Path(storage.join("_staging")).iterdir()) == [publish.SWEEP_LOCK]


def test_a_replaced_partition_is_removed_in_background_after_the_publish(tmp_path, monkeypatch):
    """With discard_in_background the publish returns as soon as the new version is in place;
    the replaced one waits in the staging area until its removal ends (wait_discards), and a
    sweep by another publish meanwhile does no harm."""
    storage = Storage.open(str(tmp_path / "root"))
    staging = storage.join("_staging")
    final = storage.join("arrival_events", "scenario=baseline", "year=2026")
    _publish(storage, final, "A")
    release = threading.Event()
    real_rmtree = publish.shutil.rmtree

    def held_rmtree(path, **kw):
        if threading.current_thread().name == "discard-replaced":
            assert release.wait(30)
        real_rmtree(path, **kw)

    monkeypatch.setattr(publish.shutil, "rmtree", held_rmtree)
    _publish(storage, final, "B", background=True)
    assert _version_of(final) == ("B", 0)
    waiting = [p for p in Path(staging).iterdir() if p.name != publish.SWEEP_LOCK]
    assert len(waiting) == 1 and {p.name for p in waiting[0].iterdir()} == set(VERSIONS["A"])
    publish._sweep_abandoned(staging)  # what the next publish does first
    release.set()
    publish.wait_discards()
    assert sorted(p.name for p in Path(staging).iterdir()) == [publish.SWEEP_LOCK]
    assert _version_of(final) == ("B", 0)
