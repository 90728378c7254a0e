"""The in-memory world: the six contract tables in canonical form plus their fingerprint."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from engine_core.errors import EngineError


@dataclass(frozen=True, eq=False)
class World:
    """A validated world.

    ``tables`` has exactly the keys of ``schemas.WORLD_TABLES``; each table has exactly its
    contract schema and rows in canonical order (docs/world.md). ``fingerprint`` is the hex
    SHA-256 of that canonical content; ``source`` says where it came from (``preset:tiny`` or
    the absolute path of a directory of Parquet files). Two worlds are equal, and hash alike,
    when their fingerprints are: same content, wherever it came from.
    """

    tables: dict[str, pa.Table]
    fingerprint: str
    source: str

    @property
    def merchants(self) -> pa.Table:
        return self.tables["merchants"]

    @property
    def sites(self) -> pa.Table:
        return self.tables["sites"]

    @property
    def edges(self) -> pa.Table:
        return self.tables["edges"]

    @property
    def series(self) -> pa.Table:
        return self.tables["series"]

    @property
    def calendar(self) -> pa.Table:
        return self.tables["calendar"]

    @property
    def scenarios(self) -> pa.Table:
        return self.tables["scenarios"]

    @property
    def scenario_ids(self) -> tuple[str, ...]:
        return tuple(self.scenarios.column("scenario_id").to_pylist())

    def scenario_band(self, scenario_id: str) -> str:
        """The band (baseline | stress) of a scenario; ``WORLD_UNKNOWN_SCENARIO`` if absent."""
        ids = self.scenarios.column("scenario_id").to_pylist()
        if scenario_id not in ids:
            raise EngineError(
                "WORLD_UNKNOWN_SCENARIO",
                f"scenario {scenario_id!r} is not in this world; it has {', '.join(ids)}",
                table="scenarios",
                column="scenario_id",
                key=scenario_id,
            )
        return self.scenarios.column("band")[ids.index(scenario_id)].as_py()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, World):
            return NotImplemented
        return self.fingerprint == other.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        rows = ", ".join(f"{k}={t.num_rows}" for k, t in self.tables.items())
        return f"World(source={self.source!r}, fingerprint={self.fingerprint[:12]}…, {rows})"
