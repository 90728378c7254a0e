"""Storage: output layout, filesystems (local or object store) and atomic publish."""

from engine_core.io.batches import iter_batches
from engine_core.io.layout import RunLayout, validate_scenario_id
from engine_core.io.publish import publish_dir, read_json, write_json_atomic
from engine_core.io.storage import Storage

__all__ = [
    "RunLayout",
    "Storage",
    "iter_batches",
    "publish_dir",
    "read_json",
    "validate_scenario_id",
    "write_json_atomic",
]
