"""Storage: output layout, filesystems (local or object store), atomic publish, the store."""

from engine_core.io.batches import iter_batches
from engine_core.io.layout import RunLayout
from engine_core.io.publish import publish_dir
from engine_core.io.storage import Storage
from engine_core.io.store import PASSED_FLAG, DatasetStore

__all__ = ["PASSED_FLAG", "DatasetStore", "RunLayout", "Storage", "iter_batches", "publish_dir"]
