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

BATCH_ROWS = 1 << 20
MAX_GROUP_ROWS = 1 << 22  # larger row groups are read in slices (memory bound)


def _open(path: str, fs) -> pq.ParquetFile:
    """A Parquet file for reading; a local one memory-mapped (its column chunks are then the
    page cache's pages, not copies of them: half the system time of a buffered read)."""
    if isinstance(fs, pafs.LocalFileSystem):
        return pq.ParquetFile(pa.memory_map(path))
    return pq.ParquetFile(path, filesystem=fs)


def iter_batches(files: list[str], fs, columns: list[str]) -> Iterator[pa.Table]:
    """The rows of ``files`` in order, a row group at a time (row groups above
    ``MAX_GROUP_ROWS`` in slices of ``BATCH_ROWS``), the next one decoded in a background
    thread while the caller works on the current one."""
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for f in files:
                pf = _open(f, fs)
                for g in range(pf.metadata.num_row_groups):
                    if stop.is_set():
                        return
                    if pf.metadata.row_group(g).num_rows <= MAX_GROUP_ROWS:
                        q.put(pf.read_row_group(g, columns=columns))
                        continue
                    for rb in pf.iter_batches(
                        batch_size=BATCH_ROWS, row_groups=[g], columns=columns
                    ):
                        if stop.is_set():
                            return
                        q.put(pa.Table.from_batches([rb]))
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
