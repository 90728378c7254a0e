"""The fidelity report's event tallies, taken during the S4 rules' pass and kept for the report.

The S4 rules decode every row of a partition's ``arrival_events``; the fidelity report needs
seven of its columns, row by row. Decoding the events a second time cost the reference year
≈ 11 CPU-s of its ≈ 18. So where one process runs both (the Dagster S4 step), a
:class:`TallyRecorder` rides the rules' pass: every table of rows the rules read is folded into
the report's tallies as well, and the tallies are stored beside the checks' verdict memos,
outside the run's datasets (:func:`tallies_path`), under a signature of everything they
depend on:

- the engine code (a digest of every ``engine_core`` source file), the world fingerprint, the
  routing share behind the world frame and the partition's horizon;
- every ``arrival_events`` file of the partition, with relative path, size and modification
  time (publishing replaces a partition as a whole, so a re-run changes the signature).

The signature is taken before the rules read the files, and the tallies are stored only when
they hold exactly as many rows as the files do. :func:`recall_event_tallies` hands them back
only while the signature holds; otherwise the report scans the events itself
(:func:`engine_core.fidelity.scan.scan_events`), with the same result: the tallies are integer
counts, whatever the order and the cut of the rows (tests/fidelity/test_tallies.py).
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine_core.checks.memo import code_digest
from engine_core.config import Policy
from engine_core.fidelity.scan import (
    RUN_DIR_RE,
    EventAggregates,
    EventTally,
    WorldFrame,
    horizon_of,
    partition_dir,
)
from engine_core.io.files import file_stamps, filesystem_for
from engine_core.io.publish import write_small_file
from engine_core.schemas import DEMAND_CLASSES, HOURS_PER_WEEK
from engine_core.world import World

TALLY_VERSION = 1
TALLY_DIR = "_fidelity"
TALLY_FILE = "event_tallies.npz"


def tallies_path(run_dir: str, scenario: str, year: int) -> str | None:
    """Where the tallies of partition (scenario, year) of the run under ``run_dir``
    (``<root>/<world_fp[:12]>/<parameter_hash[:12]>/seed=<seed>``) are kept: beside the
    checks' verdict memos, outside the run's datasets —
    ``<root>/_fidelity/<world_fp[:12]>/<parameter_hash[:12]>/seed=<seed>/scenario=<s>/
    year=<y>/event_tallies.npz``. None for a directory not laid out as a run."""
    split = urlsplit(run_dir) if "://" in run_dir else None
    path = (split.path if split else run_dir).rstrip("/")
    filed = RUN_DIR_RE.search(path)
    if filed is None or filed.end() != len(path):
        return None
    parts = [path[: filed.start()].rstrip("/"), TALLY_DIR, filed.group(0),
             f"scenario={scenario}", f"year={year:04d}", TALLY_FILE]
    joined = "/".join(parts)
    if split is None:
        return joined
    return urlunsplit((split.scheme, split.netloc, joined, split.query, split.fragment))


def events_signature(run_dir: str, scenario: str, year: int, frame: WorldFrame
                     ) -> tuple[str, int]:
    """The signature of the partition's ``arrival_events`` files and of what the tallies of
    ``frame`` depend on, and the number of rows the files hold (from their footers)."""
    fs, local = filesystem_for(partition_dir(run_dir, "arrival_events", scenario, year))
    files = file_stamps(fs, local)
    rows = 0
    for rel, _, _ in files:
        if rel.endswith(".parquet"):
            with fs.open_input_file(local + rel) as handle:
                rows += pq.ParquetFile(handle).metadata.num_rows
    h = hashlib.sha256()
    ident = {
        "tallies": TALLY_VERSION,
        "code": code_digest(),
        "world": frame.world.fingerprint,
        "p_virtual_hybrid": frame.p_virtual_hybrid,
        "horizon": [frame.horizon.start_s, frame.horizon.n_hours],
        "scenario": scenario,
        "year": year,
    }
    h.update(json.dumps(ident, sort_keys=True).encode())
    h.update(json.dumps(files).encode())
    return h.hexdigest(), rows


class TallyRecorder:
    """The rider of the S4 rules' pass (``Run.check("s4", rider=...)``): folds every table of
    rows the rules read into the fidelity tallies; :meth:`save` stores them when they cover
    the partition. A fold that fails only means the report scans the events itself: it never
    fails the rules."""

    def __init__(self, run_dir: str, scenario: str, year: int, world: World,
                 policy: Policy) -> None:
        self.run_dir, self.scenario, self.year = run_dir, scenario, year
        horizon = horizon_of(run_dir, scenario, year)
        self.frame = WorldFrame(world, scenario, horizon, policy.routing.p_virtual_hybrid)
        self.tally = EventTally(self.frame)
        # taken before the rules read the files: a publish racing the pass makes the tallies
        # stale, never wrong
        self.signature, self.rows = events_signature(run_dir, scenario, year, self.frame)
        self.error: str | None = None
        self.outcome = "fidelity tallies not taken yet"

    def __call__(self, t: pa.Table) -> None:
        if self.error is not None:
            return
        try:
            self.tally(t)
        except Exception as e:  # noqa: BLE001 - the report falls back to its own scan
            self.error = f"{type(e).__name__}: {e}"

    def save(self) -> bool:
        """Store the tallies when they hold every row of the partition; True if stored.
        :attr:`outcome` says what happened, in a sentence."""
        path = tallies_path(self.run_dir, self.scenario, self.year)
        if path is None:
            self.outcome = (f"fidelity tallies not kept: {self.run_dir} is not laid out as a run "
                            "(<root>/<world>/<parameters>/seed=<n>)")
            return False
        if self.error is not None:
            self.outcome = f"fidelity tallies not kept, the report scans the events: {self.error}"
            return False
        if self.tally.events != self.rows:
            self.outcome = (f"fidelity tallies not kept, the report scans the events: they hold "
                            f"{self.tally.events:,} of the partition's {self.rows:,} rows")
            return False
        try:
            _write(path, _to_arrays(self.tally, self.signature))
        except OSError as e:
            self.outcome = f"fidelity tallies not kept, the report scans the events: {e}"
            return False
        self.outcome = f"fidelity tallies of {self.rows:,} events kept for the report: {path}"
        return True


def recall_event_tallies(run_dir: str, scenario: str, year: int, frame: WorldFrame
                         ) -> EventAggregates | None:
    """The stored tallies of the partition as the report's event aggregates, when their
    signature still holds for ``frame`` and the files; else None."""
    path = tallies_path(run_dir, scenario, year)
    if path is None:
        return None
    fs, local = filesystem_for(path)
    try:
        with fs.open_input_stream(local) as fh:
            data = dict(np.load(io.BytesIO(fh.read()), allow_pickle=False))
    except (OSError, ValueError):
        return None
    if str(data.get("signature", "")) != events_signature(run_dir, scenario, year, frame)[0]:
        return None
    n_cls, n_loc = len(DEMAND_CLASSES), len(frame.locations)
    shapes = {"class_how": n_cls * HOURS_PER_WEEK, "merchant_total": frame.merchant_ids.size,
              "loc_day": n_loc * frame.n_days}
    if any(data[k].size != n for k, n in shapes.items()):
        return None
    labels = [str(x) for x in data["dst_labels"]]
    counts, gap = data["dst_counts"], data["dst_gap"]
    return EventAggregates(
        data["class_how"].astype(np.float64).reshape(n_cls, HOURS_PER_WEEK),
        data["merchant_total"].astype(np.float64),
        data["loc_day"].astype(np.float64).reshape(n_loc, frame.n_days),
        {k: int(c[0]) for k, c, g in zip(labels, counts, gap, strict=True) if g},
        {k: [int(c[1]), int(c[2])] for k, c, g in zip(labels, counts, gap, strict=True)
         if not g},
        int(data["events"]),
    )


def _to_arrays(tally: EventTally, signature: str) -> dict[str, Any]:
    total = tally.total
    labels = sorted(total.dst)
    return {
        "signature": np.array(signature),
        "events": np.array(total.events, dtype=np.int64),
        "class_how": total.class_how,
        "merchant_total": total.merchant_total,
        "loc_day": total.loc_day,
        "dst_labels": np.array(labels, dtype=str),
        "dst_counts": np.array([total.dst[k] for k in labels], dtype=np.int64).reshape(-1, 3),
        "dst_gap": np.array([k in tally.zones.gaps for k in labels], dtype=bool),
    }


def _write(path: str, arrays: dict[str, Any]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    fs, local = filesystem_for(path)
    write_small_file(fs, local, buf.getvalue())
