"""Reading a dataset a row group at a time, the next one decoded in a background thread.

Every consumer that must see every row of a partition (the S4 chunker, the validation rules)
reads through :func:`iter_batches`, so memory holds two row groups, never the partition.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from engine_core.kernels.parallel import same_threads

BATCH_ROWS = 1 << 20
MAX_GROUP_ROWS = 1 << 22  # larger row groups are read in slices (memory bound)


def _open(path: str, fs) -> pq.ParquetFile:
    """A Parquet file for reading; a local one memory-mapped (its column chunks are then the
    page cache's pages, not copies of them: half the system time of a buffered read)."""
    if isinstance(fs, pafs.LocalFileSystem):
        return pq.ParquetFile(pa.memory_map(path))
    return pq.ParquetFile(path, filesystem=fs)


def prefetched(items: Iterator) -> Iterator:
    """``items`` produced in a background thread (with the caller's kernel thread setting),
    at most two ahead of the consumer."""
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    done = object()
    as_caller = same_threads()

    def produce() -> None:
        try:
            as_caller()
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
            q.put(done)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    th = threading.Thread(target=produce, daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while th.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                th.join(0.01)


def _row_group(pf: pq.ParquetFile, g: int, columns: list[str]) -> Iterator[pa.Table]:
    """Row group ``g`` whole, or in slices of ``BATCH_ROWS`` above ``MAX_GROUP_ROWS``."""
    if pf.metadata.row_group(g).num_rows <= MAX_GROUP_ROWS:
        yield pf.read_row_group(g, columns=columns)
        return
    for rb in pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[g], columns=columns):
        yield pa.Table.from_batches([rb])


def iter_batches(files: list[str], fs, columns: list[str]) -> Iterator[pa.Table]:
    """The rows of ``files`` in order, a row group at a time (row groups above
    ``MAX_GROUP_ROWS`` in slices of ``BATCH_ROWS``), the next one decoded in a background
    thread while the caller works on the current one."""

    def tables() -> Iterator[pa.Table]:
        for f in files:
            pf = _open(f, fs)
            for g in range(pf.metadata.num_row_groups):
                yield from _row_group(pf, g, columns)

    return prefetched(tables())


def overlapping_row_groups(pf: pq.ParquetFile, column: str, lo: int, hi: int) -> list[int]:
    """The row groups of ``pf`` whose statistics on ``column`` may hold a value in
    ``[lo, hi]`` (every row group without statistics)."""
    meta = pf.metadata
    col = pf.schema_arrow.get_field_index(column)
    keep = []
    for g in range(meta.num_row_groups):
        st = meta.row_group(g).column(col).statistics if col >= 0 else None
        if st is None or not st.has_min_max or (st.max >= lo and st.min <= hi):
            keep.append(g)
    return keep


def iter_row_groups(parts: list[tuple[str, int, list[int]]], fs, columns: list[str]
                    ) -> Iterator[tuple[int, pa.Table]]:
    """Chosen row groups of several files, in order, each as (position of its first row in
    the concatenation of the files, table): ``parts`` lists (file, position of the file's
    first row, row group indices). Prefetched and sliced like :func:`iter_batches`."""

    def tables() -> Iterator[tuple[int, pa.Table]]:
        for f, base, groups in parts:
            pf = _open(f, fs)
            starts = [0]
            for g in range(pf.metadata.num_row_groups):
                starts.append(starts[-1] + pf.metadata.row_group(g).num_rows)
            for g in groups:
                pos = base + starts[g]
                for t in _row_group(pf, g, columns):
                    yield pos, t
                    pos += t.num_rows

    return prefetched(tables())
