"""Export → load round trip, atomic export, reading errors, fingerprint encoding."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from engine_core.errors import EngineError
from engine_core.schemas import WORLD_TABLES
from engine_core.world import World, export_world, generate_world, load_world, world_fingerprint


@pytest.fixture(scope="module")
def tiny() -> World:
    return generate_world("tiny")


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "tiny"
    export_world(tiny, out)
    return out


def test_export_writes_one_zstd_parquet_per_table(tiny, tmp_path):
    paths = export_world(tiny, tmp_path / "w")
    assert [p.name for p in paths] == [f"{name}.parquet" for name in WORLD_TABLES]
    assert sorted(os.listdir(tmp_path / "w")) == sorted(p.name for p in paths)
    assert [p.name for p in tmp_path.iterdir()] == ["w"]  # no staging directory left
    for path in paths:
        meta = pq.ParquetFile(path).metadata
        assert meta.row_group(0).column(0).compression == "ZSTD"
        assert pq.read_schema(path).names == WORLD_TABLES[path.stem].names


def test_export_then_load_gives_the_same_world(tiny, exported):
    loaded = load_world(exported)
    assert loaded.fingerprint == tiny.fingerprint
    assert loaded.source == str(exported.resolve())
    for name in WORLD_TABLES:
        assert loaded.tables[name].equals(tiny.tables[name]), name
        assert loaded.tables[name].schema.equals(WORLD_TABLES[name])
    assert load_world(str(exported)).fingerprint == tiny.fingerprint


def test_export_is_byte_reproducible_and_overwrites_atomically(tiny, tmp_path):
    first = export_world(tiny, tmp_path / "a")
    again = export_world(generate_world("tiny"), tmp_path / "a")  # into a non-empty directory
    other = export_world(tiny, tmp_path / "b")
    for p, q, r in zip(first, again, other, strict=True):
        assert p.read_bytes() == q.read_bytes() == r.read_bytes()
    assert sorted(os.listdir(tmp_path / "a")) == sorted(p.name for p in first)  # no temp files


def test_export_refuses_a_file_as_target(tiny, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(EngineError) as info:
        export_world(tiny, target)
    assert info.value.code == "WORLD_EXPORT_FAILED"


def test_preset_names_and_prefix(tiny):
    assert load_world("tiny").fingerprint == tiny.fingerprint
    assert load_world("preset:tiny").source == "preset:tiny"
    assert tiny.source == "preset:tiny"


@pytest.mark.parametrize("spec", ["huge", "preset:huge", "/nonexistent/world/dir"])
def test_unknown_world(spec):
    with pytest.raises(EngineError) as info:
        load_world(spec)
    assert info.value.code == "WORLD_NOT_FOUND"
    assert info.value.key == spec


def test_missing_parquet_file(exported, tmp_path):
    d = tmp_path / "w"
    d.mkdir()
    for name in WORLD_TABLES:
        if name != "series":
            (d / f"{name}.parquet").write_bytes((exported / f"{name}.parquet").read_bytes())
    with pytest.raises(EngineError) as info:
        load_world(d)
    assert (info.value.code, info.value.table) == ("WORLD_MISSING_TABLE", "series")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_unreadable_parquet(exported, tmp_path, damage):
    d = tmp_path / "w"
    d.mkdir()
    for name in WORLD_TABLES:
        data = (exported / f"{name}.parquet").read_bytes()
        if name == "sites":
            data = {
                "truncate": data[: len(data) // 2],
                "garbage": b"not parquet" * 10,
                "empty": b"",
            }[damage]
        (d / f"{name}.parquet").write_bytes(data)
    with pytest.raises(EngineError) as info:
        load_world(d)
    assert (info.value.code, info.value.table) == ("WORLD_UNREADABLE", "sites")
    assert "sites.parquet" in info.value.message


def test_invalid_directory_world_is_rejected_before_use(exported, tmp_path):
    d = tmp_path / "w"
    d.mkdir()
    for name in WORLD_TABLES:
        table = pq.read_table(exported / f"{name}.parquet")
        if name == "edges":
            w = table.column("weight").to_pylist()
            w[0] = -1.0
            table = table.set_column(table.schema.get_field_index("weight"), "weight", pa.array(w))
        pq.write_table(table, d / f"{name}.parquet")
    with pytest.raises(EngineError) as info:
        load_world(d)
    assert (info.value.code, info.value.table, info.value.column) == (
        "WORLD_BAD_WEIGHT",
        "edges",
        "weight",
    )


def test_bring_your_own_encodings_keep_the_fingerprint(tiny, tmp_path):
    """Shuffled rows, dictionary strings, signed ids, extra columns: same canonical world."""
    d = tmp_path / "byo"
    d.mkdir()
    rng = np.random.default_rng(7)
    for name, table in tiny.tables.items():
        t = table.take(rng.permutation(table.num_rows))
        for i, field in enumerate(t.schema):
            if pa.types.is_string(field.type):
                t = t.set_column(i, field.name, pc.dictionary_encode(t.column(field.name)))
            elif pa.types.is_uint64(field.type):
                t = t.set_column(i, field.name, t.column(field.name).cast(pa.int64()))
        t = t.append_column("comment", pa.array(["byo"] * t.num_rows))
        pq.write_table(t, d / f"{name}.parquet", row_group_size=7)
    loaded = load_world(d)
    assert loaded.fingerprint == tiny.fingerprint
    assert all(loaded.tables[n].equals(tiny.tables[n]) for n in WORLD_TABLES)


def test_world_properties(tiny):
    assert set(tiny.tables) == set(WORLD_TABLES)
    assert tiny.merchants is tiny.tables["merchants"]
    assert tiny.sites is tiny.tables["sites"]
    assert tiny.edges is tiny.tables["edges"]
    assert tiny.series is tiny.tables["series"]
    assert tiny.calendar is tiny.tables["calendar"]
    assert tiny.scenarios is tiny.tables["scenarios"]
    assert tiny.scenario_ids == ("baseline", "stress")
    assert tiny == load_world("tiny") and hash(tiny) == hash(load_world("tiny"))
    assert tiny != generate_world("tiny", seed=3)
    assert tiny.scenario_band("stress") == "stress"
    with pytest.raises(EngineError) as info:
        tiny.scenario_band("panic")
    assert info.value.code == "WORLD_UNKNOWN_SCENARIO"


# ----------------------------------------------------------------------------- fingerprint
def _uer(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(4, "big") + b


def _reference_fingerprint(tables: dict[str, pa.Table]) -> str:
    """The encoding of docs/world.md, written out row by row, independent of the library."""
    h = hashlib.sha256(_uer("arrivals.world.v1"))
    for name, schema in WORLD_TABLES.items():
        t = tables[name]
        h.update(_uer(name) + struct.pack("<Q", t.num_rows))
        for field in schema:
            h.update(_uer(field.name) + _uer(str(field.type)))
            values = t.column(field.name).to_pylist()
            if field.type == pa.uint64():
                h.update(b"".join(struct.pack("<Q", v) for v in values))
            elif field.type == pa.float64():
                h.update(b"".join(struct.pack("<d", v + 0.0) for v in values))
            elif field.type == pa.date32():
                h.update(b"".join(struct.pack("<i", (v.toordinal() - 719163)) for v in values))
            elif field.type == pa.string():
                h.update(bytes(0 if v is None else 1 for v in values))
                h.update(b"".join(struct.pack("<I", len((v or "").encode())) for v in values))
                h.update(b"".join((v or "").encode() for v in values))
            else:
                h.update(b"".join(struct.pack("<I", len(v)) for v in values))
                h.update(b"".join(struct.pack("<d", x + 0.0) for v in values for x in v))
    return h.hexdigest()


def test_fingerprint_follows_the_documented_encoding(tiny):
    assert tiny.fingerprint == _reference_fingerprint(tiny.tables)
    assert world_fingerprint(tiny.tables) == tiny.fingerprint


def test_fingerprint_sees_every_value(tiny):
    t = dict(tiny.tables)
    w = t["sites"].column("weight").to_pylist()
    w[-1] = w[-1] * (1 + 1e-15)
    t["sites"] = t["sites"].set_column(4, "weight", pa.array(w))
    assert world_fingerprint(t) != tiny.fingerprint
    t = dict(tiny.tables)
    labels = t["scenarios"].column("labels").to_pylist()
    labels[0] = None
    t["scenarios"] = t["scenarios"].set_column(2, "labels", pa.array(labels, pa.string()))
    assert world_fingerprint(t) != tiny.fingerprint


def test_export_into_an_empty_existing_directory(tiny, tmp_path):
    (tmp_path / "w").mkdir()
    paths = export_world(tiny, tmp_path / "w")
    assert load_world(tmp_path / "w").fingerprint == tiny.fingerprint
    assert oct((tmp_path / "w").stat().st_mode & 0o777) == oct(0o755)
    assert all(p.exists() for p in paths)


def _failing_writer(monkeypatch, fail_on: str):
    import engine_core.world.loader as loader

    real = loader.pq.write_table

    def write(table, where, **kwargs):
        if Path(str(where)).name.startswith((f"{fail_on}.parquet", f".{fail_on}.parquet")):
            Path(str(where)).write_bytes(b"partial")
            raise OSError("disk full")
        return real(table, where, **kwargs)

    monkeypatch.setattr(loader.pq, "write_table", write)


def test_failed_export_leaves_nothing_half_written(tiny, tmp_path, monkeypatch):
    _failing_writer(monkeypatch, "series")
    with pytest.raises(OSError):
        export_world(tiny, tmp_path / "new")
    assert list(tmp_path.iterdir()) == []  # neither the target nor a staging directory


def test_failed_overwrite_keeps_the_previous_files(tiny, tmp_path, monkeypatch):
    before = {p.name: p.read_bytes() for p in export_world(tiny, tmp_path / "w")}
    _failing_writer(monkeypatch, "series")
    with pytest.raises(OSError):
        export_world(generate_world("tiny", seed=5), tmp_path / "w")
    after = {p.name: p.read_bytes() for p in (tmp_path / "w").iterdir()}
    assert after == before  # the old world, whole: no mix of old and new tables
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]  # no staging directory left


def test_export_refuses_a_directory_with_other_files(tiny, tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "notes.txt").write_text("keep me")
    with pytest.raises(EngineError) as info:
        export_world(tiny, tmp_path / "w")
    assert info.value.code == "WORLD_EXPORT_FAILED"
    assert (tmp_path / "w" / "notes.txt").read_text() == "keep me"
