"""Parameters of the embedded world generator, read from ``configs/worlds`` and validated.

``catalogue.yaml`` holds what every preset shares (time zones, demand-class shapes, class mixes,
calendar effects, scenarios); ``<preset>.yaml`` holds the dimensions and distribution widths of
one preset. Both are parsed with the safe YAML loader and pydantic models that forbid unknown
keys; a bad file raises ``EngineError("WORLD_PRESET_INVALID")`` naming file, field and rule.
"""

from __future__ import annotations

import importlib.resources
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

from engine_core.config import CONFIG_DIR, load_validated
from engine_core.errors import EngineError
from engine_core.schemas import DEMAND_CLASSES, SCENARIO_BANDS, VIRTUAL_MODES

WORLD_CONFIG_DIR: Path = CONFIG_DIR / "worlds"
CATALOGUE_FILE = "catalogue.yaml"

PositiveFloat = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
Share = Annotated[float, Strict(), Field(ge=0, le=1, allow_inf_nan=False)]
PositiveInt = Annotated[int, Strict(), Field(gt=0)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]
Hour = Annotated[float, Strict(), Field(ge=0, lt=24, allow_inf_nan=False)]
Country = Annotated[str, Strict(), Field(pattern=r"^[A-Z]{2}$")]
ScenarioId = Annotated[str, Strict(), Field(pattern=r"^[a-z0-9_]+$")]
ClassOrStar = Literal[DEMAND_CLASSES + ("*",)]  # type: ignore[valid-type]
DemandClass = Literal[DEMAND_CLASSES]  # type: ignore[valid-type]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known_tzid(tzid: str) -> str:
    if tzid not in usable_tzids():
        raise ValueError(f"unknown IANA time zone {tzid!r}")
    return tzid


@lru_cache(maxsize=1)
def usable_tzids() -> frozenset[str]:
    """IANA zones a world may use: those listed by the installed ``tzdata`` package — the
    database the engine's offset tables are built from (``engine_core.tz``), so the answer
    does not depend on the host's /usr/share/zoneinfo — minus the placeholder ``Factory``.

    Read here rather than through ``engine_core.tz`` so that validating or exporting a world
    does not load the JIT compiler."""
    text = importlib.resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    names = {line.strip() for line in text.splitlines() if line.strip()}
    return frozenset(names - {"Factory", "localtime", "posixrules"})


# ----------------------------------------------------------------------------- catalogue
class ZoneEntry(_Model):
    """A zone of the catalogue. ``subdivision`` is the ISO 3166-2 subdivision (as the
    ``holidays`` package spells it) of the zone's principal city: its regional public
    holidays apply to this zone only."""

    tzid: str
    country: Country
    weight: PositiveFloat
    subdivision: Annotated[str, Strict(), Field(pattern=r"^[A-Z0-9]{1,3}$")] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            if len(value) not in (3, 4):
                raise ValueError("a zone is [tzid, country, weight] or [tzid, country, weight, "
                                 "subdivision]")
            keys = ("tzid", "country", "weight", "subdivision")
            return dict(zip(keys, value, strict=False))
        return value

    @field_validator("tzid")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _known_tzid(v)


class DayProfile(_Model):
    """base + Σ height · exp(-½ (Δh / width)²), Δh the circular distance to the centre hour."""

    base: NonNegativeFloat
    peaks: list[tuple[Hour, PositiveFloat, PositiveFloat]]


class ClassShape(_Model):
    weekday: DayProfile
    friday: DayProfile | None = None
    saturday: DayProfile | None = None
    sunday: DayProfile | None = None
    day_level: Annotated[list[PositiveFloat], Field(min_length=7, max_length=7)]


class CampaignStart(_Model):
    """A fixed date (month, day) or the nth weekday (0 = Monday) of a month, plus an offset."""

    month: Annotated[int, Strict(), Field(ge=1, le=12)]
    day: Annotated[int, Strict(), Field(ge=1, le=28)] | None = None
    weekday: Annotated[int, Strict(), Field(ge=0, le=6)] | None = None
    nth: Annotated[int, Strict(), Field(ge=1, le=4)] | None = None
    offset_days: Annotated[int, Strict(), Field(ge=-7, le=7)] = 0

    @model_validator(mode="after")
    def _one_rule(self) -> CampaignStart:
        fixed = self.day is not None
        nth = self.weekday is not None and self.nth is not None
        if fixed == nth or (self.weekday is None) != (self.nth is None):
            raise ValueError("give either `day` or both `weekday` and `nth`")
        return self


class Campaign(_Model):
    start: CampaignStart
    days: Annotated[int, Strict(), Field(ge=1, le=31)]
    effects: dict[ClassOrStar, PositiveFloat]


class CalendarEffects(_Model):
    years: tuple[Annotated[int, Strict(), Field(ge=1970, le=2200)], Annotated[int, Strict()]]
    public_holiday: dict[ClassOrStar, PositiveFloat]
    # The day before a public holiday (when it is not itself a holiday), in the holiday's
    # country or, for a regional holiday, in the zones of its subdivision.
    pre_holiday: dict[ClassOrStar, PositiveFloat] = Field(default_factory=dict)
    payday: dict[ClassOrStar, PositiveFloat]
    bills_due: dict[ClassOrStar, PositiveFloat]
    campaigns: dict[Annotated[str, Field(pattern=r"^[a-z0-9_]+$")], Campaign]

    @field_validator("years")
    @classmethod
    def _years(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] > v[1]:
            raise ValueError(f"years must be [first, last] with first <= last, got {list(v)}")
        return v


class ScenarioEntry(_Model):
    scenario_id: ScenarioId
    band: Literal[SCENARIO_BANDS]  # type: ignore[valid-type]
    description: str
    campaigns: list[str]


class Catalogue(_Model):
    zones: Annotated[list[ZoneEntry], Field(min_length=1)]
    demand_classes: dict[DemandClass, ClassShape]
    class_mix: dict[Literal[VIRTUAL_MODES], dict[DemandClass, PositiveFloat]]  # type: ignore[valid-type]
    class_size: dict[DemandClass, PositiveFloat]
    calendar: CalendarEffects
    scenarios: Annotated[list[ScenarioEntry], Field(min_length=1)]

    @field_validator("zones")
    @classmethod
    def _unique_zones(cls, v: list[ZoneEntry]) -> list[ZoneEntry]:
        tzids = [z.tzid for z in v]
        if len(set(tzids)) != len(tzids):
            raise ValueError("a tzid is listed twice")
        return v

    @field_validator("demand_classes", "class_size")
    @classmethod
    def _every_class(cls, v: dict) -> dict:
        missing = [c for c in DEMAND_CLASSES if c not in v]
        if missing:
            raise ValueError(f"missing demand classes {missing}")
        return v

    @field_validator("class_mix")
    @classmethod
    def _every_mode(cls, v: dict) -> dict:
        missing = [m for m in VIRTUAL_MODES if not v.get(m)]
        if missing:
            raise ValueError(f"missing virtual modes {missing}")
        return v

    @field_validator("scenarios")
    @classmethod
    def _scenarios(cls, v: list[ScenarioEntry], info: ValidationInfo) -> list[ScenarioEntry]:
        ids = [s.scenario_id for s in v]
        if len(set(ids)) != len(ids):
            raise ValueError("a scenario_id is listed twice")
        calendar = info.data.get("calendar")
        for s in v:
            unknown = [c for c in s.campaigns if calendar and c not in calendar.campaigns]
            if unknown:
                raise ValueError(f"scenario {s.scenario_id}: unknown campaigns {unknown}")
        return v


# ----------------------------------------------------------------------------- presets
class Preset(_Model):
    """Dimensions and distribution widths of one generated world (docs/world.md)."""

    description: str
    seed: Annotated[int, Strict(), Field(ge=0, lt=2**64)]
    # Either the number of catalogue zones to take (the first N) or an explicit tzid list.
    zones: PositiveInt | Annotated[list[str], Field(min_length=1)]
    merchants: PositiveInt
    virtual_only_merchants: NonNegativeInt
    cover_every_class: Annotated[bool, Strict()]
    hybrid_merchants: NonNegativeInt
    locations: PositiveInt  # physical (merchant, country, tzid) locations in total
    sites: PositiveInt
    edges: NonNegativeInt
    weekly_arrivals: PositiveFloat  # Σ series scale
    virtual_only_demand_share: Share
    hybrid_demand_share: Share
    # Merchant size law: ``lognormal`` (exp(σ·z)) or ``pareto`` (Zipf-like tail,
    # P(S > s) ∝ s^-tail_exponent above the body, drawn through the same normal z by its
    # quantile so reach stays correlated with size); docs/calibration.md.
    merchant_size_law: Literal["lognormal", "pareto"] = "lognormal"
    merchant_size_sigma: NonNegativeFloat
    merchant_size_tail_exponent: PositiveFloat = 1.0
    reach_sigma: NonNegativeFloat
    reach_size_correlation: Annotated[float, Strict(), Field(ge=-1, le=1)]
    home_zone_boost: PositiveFloat
    zone_pull_exponent: NonNegativeFloat
    location_share_sigma: NonNegativeFloat
    mixed_channel_share: Share
    mixed_channel_fraction: Annotated[float, Strict(), Field(gt=0, lt=1)]
    site_weight_sigma: NonNegativeFloat
    edge_weight_sigma: NonNegativeFloat
    edge_home_share: Share
    shape_noise_sigma: NonNegativeFloat

    # Cross-field rules are field validators over the fields declared before them, so an
    # error names the field to fix (a model validator would only name the whole file).
    @field_validator("zones")
    @classmethod
    def _zones(cls, v: int | list[str]) -> int | list[str]:
        if isinstance(v, list):
            for tz in v:
                _known_tzid(tz)
            if len(set(v)) != len(v):
                raise ValueError("a tzid is listed twice")
        return v

    @field_validator("hybrid_merchants")
    @classmethod
    def _one_plain_merchant(cls, v: int, info: ValidationInfo) -> int:
        n, vo = info.data.get("merchants"), info.data.get("virtual_only_merchants")
        if n is not None and vo is not None and vo + v >= n:
            raise ValueError(
                f"virtual_only_merchants + hybrid_merchants ({vo + v}) must be < merchants ({n}):"
                " a preset needs at least one NON_VIRTUAL merchant"
            )
        return v

    @field_validator("locations")
    @classmethod
    def _locations(cls, v: int, info: ValidationInfo) -> int:
        n, vo = info.data.get("merchants"), info.data.get("virtual_only_merchants")
        if n is not None and vo is not None and v < n - vo:
            raise ValueError(f"locations ({v}) < merchants with sites ({n - vo})")
        return v

    @field_validator("sites")
    @classmethod
    def _sites(cls, v: int, info: ValidationInfo) -> int:
        loc = info.data.get("locations")
        if loc is not None and v < loc:
            raise ValueError(f"sites ({v}) < locations ({loc})")
        return v

    @field_validator("edges")
    @classmethod
    def _edges(cls, v: int, info: ValidationInfo) -> int:
        vo, hy = info.data.get("virtual_only_merchants"), info.data.get("hybrid_merchants")
        if vo is not None and hy is not None and v < vo + hy:
            raise ValueError(f"edges ({v}) < virtual merchants ({vo + hy})")
        return v

    @field_validator("virtual_only_demand_share", "hybrid_demand_share")
    @classmethod
    def _shares(cls, v: float, info: ValidationInfo) -> float:
        count_field = (
            "virtual_only_merchants"
            if info.field_name == "virtual_only_demand_share"
            else "hybrid_merchants"
        )
        count = info.data.get(count_field)
        if count is not None and (count == 0) != (v == 0):
            raise ValueError(f"{info.field_name} must be 0 exactly when {count_field} is 0")
        other = info.data.get("virtual_only_demand_share")
        if info.field_name == "hybrid_demand_share" and other is not None and other + v >= 1:
            raise ValueError("virtual_only_demand_share + hybrid_demand_share must be < 1")
        return v


def _validated(model: type[_Model], path: Path) -> _Model:
    return load_validated(model, path, "WORLD_PRESET_INVALID", "WORLD_PRESET_INVALID")


def preset_names(config_dir: Path = WORLD_CONFIG_DIR) -> tuple[str, ...]:
    """Names of the presets shipped in ``configs/worlds`` (every yaml but the catalogue)."""
    return tuple(sorted(p.stem for p in config_dir.glob("*.yaml") if p.name != CATALOGUE_FILE))


@lru_cache(maxsize=8)
def load_catalogue(config_dir: Path = WORLD_CONFIG_DIR) -> Catalogue:
    return _validated(Catalogue, config_dir / CATALOGUE_FILE)  # type: ignore[return-value]


@lru_cache(maxsize=16)
def load_preset(name: str, config_dir: Path = WORLD_CONFIG_DIR) -> Preset:
    """The validated preset ``name``; ``WORLD_NOT_FOUND`` when no such preset exists."""
    if name not in preset_names(config_dir):
        raise EngineError(
            "WORLD_NOT_FOUND",
            f"no world preset {name!r}; presets are {', '.join(preset_names(config_dir))}",
            key=name,
        )
    preset: Preset = _validated(Preset, config_dir / f"{name}.yaml")  # type: ignore[assignment]
    catalogue = load_catalogue(config_dir)
    if isinstance(preset.zones, int) and preset.zones > len(catalogue.zones):
        raise EngineError(
            "WORLD_PRESET_INVALID",
            f"{config_dir / f'{name}.yaml'}: zones: {preset.zones} zones asked, the catalogue "
            f"has {len(catalogue.zones)}",
            column="zones",
        )
    if isinstance(preset.zones, list):
        known = {z.tzid for z in catalogue.zones}
        missing = [tz for tz in preset.zones if tz not in known]
        if missing:
            raise EngineError(
                "WORLD_PRESET_INVALID",
                f"{config_dir / f'{name}.yaml'}: zones: {missing} not in the catalogue",
                column="zones",
            )
    return preset
