"""The output layout of SPEC §8 (Hive style):

    <root>/<world_fp[:12]>/<parameter_hash[:12]>/seed=<seed>/<dataset>/scenario=<id>/year=<yyyy>/
    <root>/<world_fp[:12]>/<parameter_hash[:12]>/seed=<seed>/validation/scenario=<id>/year=<yyyy>/

Every path component is validated, so no scenario id, dataset name or year can climb out of
the storage root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine_core.errors import EngineError
from engine_core.io.storage import Storage
from engine_core.schemas import DATASET_NAMES, YEAR_MAX, YEAR_MIN, validate_scenario_id

HEX_RE = re.compile(r"^[0-9a-f]{12,64}$")


@dataclass(frozen=True)
class RunLayout:
    storage: Storage
    world_fingerprint: str
    parameter_hash: str
    seed: int

    def __post_init__(self) -> None:
        for name, value in (("world_fingerprint", self.world_fingerprint),
                            ("parameter_hash", self.parameter_hash)):
            if not HEX_RE.fullmatch(value):
                raise EngineError("LAYOUT_INVALID", f"{name} {value!r} is not a hex digest")
        if not 0 <= int(self.seed) < 2**64:
            raise EngineError("SEED_INVALID", f"seed {self.seed} is not a u64", key=self.seed)

    @property
    def run_root(self) -> str:
        return self.storage.join(
            self.world_fingerprint[:12], self.parameter_hash[:12], f"seed={int(self.seed)}"
        )

    @property
    def staging_root(self) -> str:
        # Outside every dataset directory, on the same filesystem, so a rename publishes.
        return self.storage.join("_staging")

    def partition_dir(self, dataset: str, scenario: str, year: int) -> str:
        if dataset not in DATASET_NAMES:
            raise EngineError("LAYOUT_INVALID", f"unknown dataset {dataset!r}", key=dataset)
        validate_scenario_id(scenario)
        if not isinstance(year, int) or not YEAR_MIN <= year <= YEAR_MAX:
            raise EngineError("LAYOUT_INVALID", f"year {year!r} out of range", key=year)
        return "/".join([self.run_root, dataset, f"scenario={scenario}", f"year={year:04d}"])
