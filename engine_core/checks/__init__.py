"""Validation rules over published partitions (S5 and the Dagster asset checks).

``world_rules(ctx, store)`` judges the run's inputs; ``evaluate(ctx, store, state, year)``
judges what state ``s1``..``s4`` published for one year partition. A rule sees the run context
(engine_core/context.py) and the dataset store (engine_core/io/store.py), or plain arrays —
never a whole engine. Both return one
:class:`~engine_core.checks.verdicts.RuleResult` per rule of ``catalogue.RULES`` for that state,
in catalogue order; a rule that cannot be evaluated fails (it never raises). The codes,
figures and remedies are listed in docs/errors.md.
"""

from __future__ import annotations

from engine_core.checks.rules_s1 import s1_rules
from engine_core.checks.rules_s2 import s2_rules
from engine_core.checks.rules_s3 import s3_rules
from engine_core.checks.rules_s4 import Rider, s4_rules
from engine_core.checks.rules_world import world_rules
from engine_core.checks.verdicts import RuleResult
from engine_core.context import RunContext
from engine_core.io.store import DatasetStore


def evaluate(ctx: RunContext, store: DatasetStore, state: str, year: int,
             rider: Rider | None = None) -> list[RuleResult]:
    """Every rule of ``state`` (world, s1, s2, s3, s4) over the partition ``year``; the S4
    rules hand ``rider`` every table of rows they read (``rules_s4.Rider``)."""
    if state == "world":
        return world_rules(ctx, store)
    if state == "s1":
        return s1_rules(ctx, store, year)
    if state == "s2":
        return s2_rules(ctx, store, year)
    if state == "s3":
        return s3_rules(ctx, store, year)
    if state == "s4":
        return s4_rules(ctx, store, year, rider=rider)
    raise ValueError(f"unknown state {state!r}: expected world, s1, s2, s3 or s4")


__all__ = ["Rider", "evaluate", "world_rules"]
