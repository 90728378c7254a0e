"""The targets of the fidelity report, ``configs/fidelity.yaml``, parsed by pydantic.

A bad file raises ``EngineError("FIDELITY_TARGETS_INVALID")`` naming the field and rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

from engine_core.config import CONFIG_DIR, load_validated
from engine_core.schemas import DEMAND_CLASSES

DEFAULT_TARGETS_PATH: Path = CONFIG_DIR / "fidelity.yaml"

PositiveFloat = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
Share = Annotated[float, Strict(), Field(ge=0, le=1, allow_inf_nan=False)]
PositiveInt = Annotated[int, Strict(), Field(gt=0)]
Hour = Annotated[int, Strict(), Field(ge=0, le=24)]
Weekday = Annotated[int, Strict(), Field(ge=0, le=6)]
DemandClass = Literal[DEMAND_CLASSES]  # type: ignore[valid-type]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ordered_pair(v: tuple[float, float]) -> tuple[float, float]:
    if v[0] > v[1]:
        raise ValueError(f"must be [lo, hi] with lo <= hi, got {list(v)}")
    return v


class Profiles(_Section):
    in_person_classes: Annotated[list[DemandClass], Field(min_length=1)]
    weekdays: Annotated[list[Weekday], Field(min_length=1)]
    saturday: Weekday
    noon_hours: Annotated[list[Hour], Field(min_length=1)]
    evening_hours: Annotated[list[Hour], Field(min_length=1)]
    late_days: Annotated[list[Weekday], Field(min_length=1)]
    late_hours: Annotated[list[Hour], Field(min_length=1)]
    late_reference_hours: Annotated[list[Hour], Field(min_length=1)]
    peak_margin: Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
    night_hours: tuple[Hour, Hour]
    night_share: tuple[Share, Share]
    weekend_share: tuple[Share, Share]
    jsd_max_bits: PositiveFloat
    min_events: PositiveInt

    _pairs = field_validator("night_hours", "night_share", "weekend_share")(
        classmethod(lambda cls, v: _ordered_pair(v))
    )


class Dispersion(_Section):
    fano_min: PositiveFloat
    fano_min_mean: PositiveFloat
    kappa_relative_tolerance: PositiveFloat
    kappa_mu_min: PositiveFloat
    kappa_se_max: PositiveFloat


class Size(_Section):
    tail_exponent: PositiveFloat
    tail_exponent_tolerance: PositiveFloat
    tail_fraction: Annotated[float, Strict(), Field(gt=0, le=1)]


class CalendarTargets(_Section):
    payday_uplift: tuple[PositiveFloat, PositiveFloat]
    pre_holiday_uplift_min: PositiveFloat
    uplift_z_max: PositiveFloat
    uplift_floor: PositiveFloat

    _pairs = field_validator("payday_uplift")(classmethod(lambda cls, v: _ordered_pair(v)))


class LatentTargets(_Section):
    groups: PositiveInt
    sigma_relative_tolerance: PositiveFloat
    rho_tolerance: PositiveFloat
    rel_se_max: PositiveFloat


class DstTargets(_Section):
    fold_min_events: PositiveInt


class FidelityTargets(_Section):
    """The validated ``configs/fidelity.yaml``."""

    version: Annotated[int, Strict(), Field(ge=1)]
    profiles: Profiles
    dispersion: Dispersion
    size: Size
    calendar: CalendarTargets
    latent: LatentTargets
    dst: DstTargets


def load_targets(path: str | Path | None = None) -> FidelityTargets:
    """Load and validate the fidelity targets (default ``configs/fidelity.yaml``)."""
    p = Path(path) if path is not None else DEFAULT_TARGETS_PATH
    return load_validated(FidelityTargets, p, "FIDELITY_TARGETS_INVALID",
                          "FIDELITY_TARGETS_INVALID")
