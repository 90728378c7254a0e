"""The object-store publish protocol, on an in-memory object store whose uploads can fail.

Marker withdrawn first, files uploaded, stale objects removed, marker written last with every
file and its size; an upload that fails half-way leaves no marker and reports
STORAGE_WRITE_FAILED; an error while the partition is still being staged touches nothing.
"""

from __future__ import annotations

import json
import os

import fsspec
import pyarrow.fs as pafs
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from engine_core.errors import EngineError
from engine_core.io import Storage, publish_dir

FINAL = "bucket/root/arrival_events/scenario=baseline/year=2026"


class FlakyMemoryFileSystem(MemoryFileSystem):
    """In-memory object store; uploads of ``fail_on`` raise like a dropped connection."""

    fail_on: str | None = None

    def _open(self, path, mode="rb", **kwargs):
        if "w" in mode and self.fail_on and path.endswith(self.fail_on):
            raise ConnectionResetError(f"upload of {path} interrupted")
        return super()._open(path, mode, **kwargs)


@pytest.fixture
def store() -> tuple[Storage, FlakyMemoryFileSystem]:
    mem = FlakyMemoryFileSystem(skip_instance_cache=True)
    mem.store.clear()
    mem.pseudo_dirs.clear()
    mem.pseudo_dirs.append("")
    fs = pafs.PyFileSystem(pafs.FSSpecHandler(mem))
    storage = Storage("memory://bucket/root", fs, "bucket/root")
    assert not storage.is_local
    return storage, mem


def _publish(storage: Storage, files: dict[str, bytes]) -> None:
    with publish_dir(storage, "unused-staging-root", FINAL) as stage:
        for name, data in files.items():
            with open(os.path.join(stage, name), "wb") as fh:
                fh.write(data)


def _objects(mem: fsspec.AbstractFileSystem) -> dict[str, bytes]:
    prefix = f"/{FINAL}/"
    return {p[len(prefix) :]: mem.cat_file(p) for p in mem.find(f"/{FINAL}")}


def test_marker_written_last_lists_every_file_and_stale_objects_go(store):
    storage, mem = store
    _publish(storage, {"part-00000.parquet": b"a" * 10, "part-00001.parquet": b"b" * 20})
    _publish(storage, {"part-00000.parquet": b"a" * 10, "_totals.json": b"{}"})
    objects = _objects(mem)
    assert sorted(objects) == ["_published.json", "_totals.json", "part-00000.parquet"]
    marker = json.loads(objects["_published.json"])
    assert marker == {
        "files": ["_totals.json", "part-00000.parquet"],
        "bytes": {"_totals.json": 2, "part-00000.parquet": 10},
    }


def test_an_interrupted_upload_leaves_no_marker(store):
    storage, mem = store
    _publish(storage, {"part-00000.parquet": b"old0", "part-00001.parquet": b"old1"})
    mem.fail_on = "part-00001.parquet"
    with pytest.raises(EngineError) as err:
        _publish(storage, {"part-00000.parquet": b"new0", "part-00001.parquet": b"new1"})
    assert err.value.code == "STORAGE_WRITE_FAILED"
    assert "_published.json marker until a re-run completes" in str(err.value)
    assert "_published.json" not in _objects(mem)

    mem.fail_on = None
    _publish(storage, {"part-00000.parquet": b"new0", "part-00001.parquet": b"new1"})
    objects = _objects(mem)
    assert objects["part-00001.parquet"] == b"new1"
    assert json.loads(objects["_published.json"])["files"] == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]


def test_a_failure_while_staging_leaves_the_published_partition_alone(store):
    storage, mem = store
    _publish(storage, {"part-00000.parquet": b"old0"})
    before = _objects(mem)
    with pytest.raises(RuntimeError, match="kernel failed"):
        with publish_dir(storage, "unused-staging-root", FINAL) as stage:
            with open(os.path.join(stage, "part-00000.parquet"), "wb") as fh:
                fh.write(b"half")
            raise RuntimeError("kernel failed")
    assert _objects(mem) == before


@pytest.mark.parametrize(
    ("root", "path", "uri"),
    [
        ("s3://bucket/prefix", "bucket/prefix/x", "s3://bucket/prefix/x"),
        (
            "s3://bucket/p?endpoint_override=127.0.0.1:9000&scheme=http",
            "bucket/p/x",
            "s3://bucket/p/x?endpoint_override=127.0.0.1:9000&scheme=http",
        ),
    ],
)
def test_uri_for_gives_a_reader_the_same_endpoint(root, path, uri):
    fs = pafs.PyFileSystem(pafs.FSSpecHandler(MemoryFileSystem()))
    storage = Storage(root, fs, path.rsplit("/", 1)[0])
    assert storage.uri_for(path) == uri


def test_uri_for_keeps_local_paths(tmp_path):
    storage = Storage.open(str(tmp_path))
    assert storage.uri_for(storage.join("a")) == f"{tmp_path}/a"
