"""The parameter pack: every policy number of the engine, parsed and validated by pydantic.

``configs/policy.yaml`` is mirrored field for field by :class:`Policy`. Unknown keys, missing
keys, wrong types (a string where a number belongs, a boolean where a count belongs) and values
outside their rule are rejected with ``EngineError("POLICY_INVALID")`` naming the file, the field
path (``latent.sigma_bounds``) and the rule. ``parameter_hash`` is the SHA-256 of the canonical
JSON of the *validated* model, so it does not change when the YAML is reordered, reformatted or
when ``24`` is written as ``24.0`` — only when a value changes.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from engine_core.errors import EngineError
from engine_core.timebase import SECONDS_PER_DAY

_M = TypeVar("_M", bound=BaseModel)

# configs/ installs as engine_core.configs: the policy and presets travel with the package
CONFIG_DIR: Path = Path(str(resources.files("engine_core.configs")))
DEFAULT_POLICY_PATH: Path = CONFIG_DIR / "policy.yaml"

NAMESPACE_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
MAX_COUNT_LIMIT = 65535  # counts are stored per bucket in 16-bit-safe kernels

# Strict scalars: YAML already types its values, so "3600" (a string) or `true` (a boolean)
# where a number belongs is a mistake to report, not a value to coerce. Floats accept ints.
PositiveFloat = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
Probability = Annotated[float, Strict(), Field(ge=0, le=1, allow_inf_nan=False)]
PositiveInt = Annotated[int, Strict(), Field(gt=0)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _two_items(value: Any) -> Any:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"bounds must be a 2-element list [lo, hi], got {value!r}")
    return value


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    lo, hi = value
    if lo > hi:
        raise ValueError(f"bounds must be [lo, hi] with lo <= hi, got [{lo}, {hi}]")
    return value


PositiveBounds = Annotated[
    tuple[PositiveFloat, PositiveFloat], BeforeValidator(_two_items), AfterValidator(_ordered)
]


class BandValues(_Section):
    """One positive number per scenario band."""

    baseline: PositiveFloat
    stress: PositiveFloat


class ClassMultipliers(_Section):
    """One positive multiplier per demand class (schemas.DEMAND_CLASSES); all required."""

    office_hours: PositiveFloat
    consumer_daytime: PositiveFloat
    retail_daytime: PositiveFloat
    evening_weekend: PositiveFloat
    always_on_local: PositiveFloat
    online_24h: PositiveFloat
    online_bursty: PositiveFloat
    travel_hospitality: PositiveFloat
    fuel_convenience: PositiveFloat
    bills_utilities: PositiveFloat
    low_volume_tail: PositiveFloat

    def of(self, demand_class: str) -> float:
        return float(getattr(self, demand_class))


class ChannelMultipliers(_Section):
    card_present: PositiveFloat
    card_not_present: PositiveFloat
    mixed: PositiveFloat

    def of(self, channel_group: str) -> float:
        return float(getattr(self, channel_group))


class VirtualMultipliers(_Section):
    physical: PositiveFloat
    virtual: PositiveFloat


class TimeGrid(_Section):
    bucket_seconds: PositiveInt

    @field_validator("bucket_seconds")
    @classmethod
    def _divides_day(cls, v: int) -> int:
        if SECONDS_PER_DAY % v != 0:
            raise ValueError(f"bucket_seconds must divide {SECONDS_PER_DAY}, got {v}")
        return v


class Grouping(_Section):
    zone_groups: PositiveInt
    hash_buckets: PositiveInt


class Latent(_Section):
    sigma_base: BandValues
    length_scale_base: BandValues
    sigma_bounds: PositiveBounds
    length_scale_bounds: PositiveBounds
    factor_clip: PositiveBounds
    block_buckets: PositiveInt
    sigma_class_multiplier: ClassMultipliers
    length_scale_class_multiplier: ClassMultipliers
    sigma_channel_multiplier: ChannelMultipliers
    sigma_virtual_multiplier: VirtualMultipliers

    @field_validator("factor_clip")
    @classmethod
    def _clip_brackets_one(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] <= 1.0 <= v[1]:
            raise ValueError(f"factor_clip must contain 1.0, got [{v[0]}, {v[1]}]")
        return v


class Counts(_Section):
    law: Literal["nb2", "poisson"]
    kappa_base: BandValues
    kappa_bounds: PositiveBounds
    kappa_class_multiplier: ClassMultipliers
    lambda_max: PositiveFloat
    mu_epsilon: PositiveFloat
    max_count_per_bucket: Annotated[int, Strict(), Field(gt=0, le=MAX_COUNT_LIMIT)]


class Routing(_Section):
    p_virtual_hybrid: Probability


class Validation(_Section):
    mean_factor_tolerance: PositiveFloat
    dispersion_z_max: PositiveFloat
    uniformity_z_max: PositiveFloat
    routing_z_max: PositiveFloat
    weekend_share_tolerance: PositiveFloat
    rng_rederive_sample: NonNegativeInt
    group_size_min: PositiveInt
    group_size_max: PositiveInt

    @model_validator(mode="after")
    def _group_size_order(self) -> Validation:
        if self.group_size_min > self.group_size_max:
            raise ValueError(
                f"group_size_min ({self.group_size_min}) must be <= group_size_max "
                f"({self.group_size_max})"
            )
        return self


class Policy(_Section):
    """The validated parameter pack (configs/policy.yaml)."""

    version: Annotated[int, Strict(), Field(ge=1)]
    namespace: Annotated[str, Strict(), Field(pattern=NAMESPACE_PATTERN)]
    time_grid: TimeGrid
    grouping: Grouping
    latent: Latent
    counts: Counts
    routing: Routing
    validation: Validation


# ----------------------------------------------------------------------------- YAML reading
class _UniqueKeySafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeySafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def read_yaml_mapping(path: str | Path, unreadable_code: str) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping, with the safe loader only.

    Missing file, unparseable YAML (including ``!!python/...`` tags, which the safe loader
    refuses), duplicate keys, an empty file or a top level that is not a mapping raise
    ``EngineError(unreadable_code)`` naming the file.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EngineError(unreadable_code, f"cannot read {p}: {exc}") from exc
    try:
        # A SafeLoader subclass: only plain YAML types are ever constructed.
        data = yaml.load(text, Loader=_UniqueKeySafeLoader)
    except yaml.YAMLError as exc:
        raise EngineError(
            unreadable_code, f"{p} is not valid safe YAML: {exc}".replace("\n", " ")
        ) from exc
    if data is None:
        raise EngineError(unreadable_code, f"{p} is empty")
    if not isinstance(data, dict):
        raise EngineError(
            unreadable_code, f"{p} must hold a mapping at top level, got {type(data).__name__}"
        )
    return data


def format_validation_error(exc: ValidationError) -> tuple[str, str]:
    """(field path of the first error, one line per error 'path: rule')."""
    lines = []
    first = ""
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "<root>"
        if not first:
            first = loc
        rule = err["msg"]
        if err["type"] not in ("missing", "extra_forbidden", "value_error"):
            rule = f"{rule} (got {err.get('input')!r})"
        lines.append(f"{loc}: {rule}")
    return first, "; ".join(lines)


# ----------------------------------------------------------------------------- public API
def load_policy(path: str | Path | None = None) -> Policy:
    """Load and validate the policy pack (default ``configs/policy.yaml``).

    Raises ``EngineError("POLICY_UNREADABLE")`` for a missing, unparseable, empty or non-mapping
    file and ``EngineError("POLICY_INVALID", column=<field path>)`` for a value that breaks a
    rule; the message names the file, every offending field path and its rule.
    """
    p = Path(path) if path is not None else DEFAULT_POLICY_PATH
    return load_validated(Policy, p, "POLICY_UNREADABLE", "POLICY_INVALID")


def load_validated(model: type[_M], path: Path, unreadable: str, invalid: str) -> _M:
    """A YAML mapping validated by a pydantic ``model``: ``unreadable`` names a file that is
    missing or not a mapping, ``invalid`` a value that breaks a rule (the message names the
    file, every offending field path and its rule; ``column`` the first)."""
    data = read_yaml_mapping(path, unreadable)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        field, detail = format_validation_error(exc)
        raise EngineError(invalid, f"{path}: {detail}", column=field) from exc


def canonical_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, floats by ``repr``, NaN/inf refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def parameter_hash(policy: Policy) -> str:
    """Hex SHA-256 of the canonical JSON of the validated pack (SPEC §3)."""
    payload = canonical_json(policy.model_dump(mode="python"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
