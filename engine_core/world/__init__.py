"""The world: merchants, sites, edges, series, calendar and scenarios (SPEC §4, docs/world.md).

Two sources, one contract: ``generate_world(preset)`` (embedded seeded generator) and
``load_world(directory)`` (bring your own Parquet). Both return a validated, canonical
:class:`World` whose ``fingerprint`` identifies its content.
"""

from engine_core.world.calendar import series_day_multipliers
from engine_core.world.fingerprint import world_fingerprint
from engine_core.world.generator import generate_world
from engine_core.world.loader import export_world, load_world
from engine_core.world.model import World
from engine_core.world.presets import preset_names
from engine_core.world.validate import canonical_world_tables, validate_world

__all__ = [
    "World",
    "canonical_world_tables",
    "export_world",
    "generate_world",
    "load_world",
    "preset_names",
    "series_day_multipliers",
    "validate_world",
    "world_fingerprint",
]
