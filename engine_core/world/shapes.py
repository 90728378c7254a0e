"""Weekly local-time shapes of the demand classes (168 hours, Monday 00:00 local first).

A class shape is built from day profiles in ``configs/worlds/catalogue.yaml``:
``profile(h) = base + Σ_k height_k · exp(-½ (d(h + ½, centre_k) / width_k)²)`` evaluated at the
middle of each local hour, ``d`` the circular distance on the 24-hour clock, times the day's
``day_level``; the week is normalised to mean 1 per hour (sum 168).
"""

from __future__ import annotations

import numpy as np

from engine_core.schemas import DEMAND_CLASSES, HOURS_PER_WEEK
from engine_core.world.presets import Catalogue, ClassShape, DayProfile

HOURS_PER_DAY = 24
DAYS_PER_WEEK = 7


def day_profile(profile: DayProfile) -> np.ndarray:
    hours = np.arange(HOURS_PER_DAY, dtype=np.float64) + 0.5
    out = np.full(HOURS_PER_DAY, profile.base, dtype=np.float64)
    for centre, width, height in profile.peaks:
        d = np.abs(hours - centre)
        d = np.minimum(d, HOURS_PER_DAY - d)
        out += height * np.exp(-0.5 * (d / width) ** 2)
    return out


def class_week_shape(spec: ClassShape) -> np.ndarray:
    """The normalised 168-hour shape of one demand class."""
    by_day = [
        spec.weekday,
        spec.weekday,
        spec.weekday,
        spec.weekday,
        spec.friday or spec.weekday,
        spec.saturday or spec.weekday,
        spec.sunday or spec.saturday or spec.weekday,
    ]
    week = np.concatenate(
        [day_profile(p) * level for p, level in zip(by_day, spec.day_level, strict=True)]
    )
    return week * (HOURS_PER_WEEK / week.sum())


def class_shapes(catalogue: Catalogue) -> np.ndarray:
    """float64 [11, 168]: one row per demand class in ``schemas.DEMAND_CLASSES`` order."""
    return np.stack([class_week_shape(catalogue.demand_classes[c]) for c in DEMAND_CLASSES])
