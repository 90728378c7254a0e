"""The random source: Philox2x64-10, stream keys and samplers (docs/rng.md)."""

from engine_core.rng.philox import philox2x64_10, uniforms
from engine_core.rng.streams import FAMILIES, series_stream, stream_key, stream_keys

__all__ = ["FAMILIES", "philox2x64_10", "series_stream", "stream_key", "stream_keys", "uniforms"]
