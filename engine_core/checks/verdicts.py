"""Turning a rule's findings into a :class:`RuleResult` (figures, up to five examples).

Every rule is evaluated under :func:`guarded`: a rule whose evaluation raises (a missing
partition, an unreadable file, a column of the wrong type) *fails* with the error in its
figures. A rule that could not be evaluated must never read as passed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine_core.checks.catalogue import RULES_BY_CODE, rules_for
from engine_core.errors import EngineError


@dataclass(frozen=True)
class RuleResult:
    """One validation rule's verdict for one partition (stable code in docs/errors.md)."""

    code: str
    state: str  # the state whose output it judges: world, s1..s4
    passed: bool
    blocking: bool
    description: str
    figures: dict[str, Any] = field(default_factory=dict)
    examples: tuple[str, ...] = ()  # a few offending keys when failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "state": self.state,
            "passed": self.passed,
            "blocking": self.blocking,
            "description": self.description,
            "figures": self.figures,
            "examples": list(self.examples),
        }


MAX_EXAMPLES = 5


def plain(value: Any) -> Any:
    """A figure as plain JSON: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def verdict(
    code: str, passed: bool, figures: dict[str, Any] | None = None, examples: Iterable[str] = ()
) -> RuleResult:
    """The result of rule ``code`` (state, blocking flag and description from the catalogue)."""
    spec = RULES_BY_CODE[code]
    ex = tuple(str(e) for e in examples)[:MAX_EXAMPLES]
    return RuleResult(
        code=code,
        state=spec.state,
        passed=bool(passed),
        blocking=spec.blocking,
        description=spec.description,
        figures=plain(dict(figures or {})),
        examples=() if passed else ex,
    )


def not_evaluated(code: str, error: BaseException | str) -> RuleResult:
    """A rule that could not be evaluated fails, naming why."""
    if isinstance(error, EngineError):
        text = str(error)
        example = f"{error.table or 'input'}; {error.code}: {error.message}"
    else:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        example = f"input; {text}"
    return verdict(code, False, {"error": text}, [example])


def guarded(code: str, fn: Callable[[], RuleResult]) -> RuleResult:
    try:
        return fn()
    except Exception as exc:  # a failure to evaluate is a failed rule, never a crash of S5
        return not_evaluated(code, exc)


def state_rules(
    state: str, first: list[RuleResult], rest: Callable[[], Iterable[RuleResult]]
) -> list[RuleResult]:
    """A state's verdicts: ``first`` (each already guarded), then ``rest()``. When ``rest``
    cannot be evaluated, every rule it would have judged fails with the error."""
    results = list(first)
    try:
        results += list(rest())
    except Exception as exc:
        return complete(state, results, exc)
    return complete(state, results)


def complete(
    state: str, results: list[RuleResult], error: BaseException | str | None = None
) -> list[RuleResult]:
    """Every rule of ``state`` in catalogue order; rules without a verdict fail."""
    by_code = {r.code: r for r in results}
    out = []
    for spec in rules_for(state):
        r = by_code.get(spec.code)
        if r is None:
            r = not_evaluated(
                spec.code,
                error if error is not None else "no verdict: an earlier step of this state failed",
            )
        out.append(r)
    return out


class Offences:
    """Counts offending rows of one rule and keeps the first few examples."""

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[str] = []

    def add(self, n: int, examples: Iterable[str] = ()) -> None:
        self.count += int(n)
        if len(self.examples) < MAX_EXAMPLES:
            for e in examples:
                self.examples.append(e)
                if len(self.examples) >= MAX_EXAMPLES:
                    break

    def want(self) -> int:
        return MAX_EXAMPLES - len(self.examples)

    @property
    def ok(self) -> bool:
        return self.count == 0


def pearson_z(observed: np.ndarray, probs: np.ndarray) -> tuple[float, float, float, int]:
    """Pearson's X² of one multinomial sample against cell probabilities, with its exact
    null mean k-1 and variance 2(k-1) + (Σ 1/p - k² - 2k + 2)/n (Haldane), for pooling.

    Returns (X², mean, variance, n). Cells with p = 0 are left out (they must be empty; a
    hit there makes X² infinite)."""
    n = float(observed.sum())
    keep = probs > 0
    if n == 0 or keep.sum() < 2:
        return 0.0, 0.0, 0.0, int(n)
    if np.any(observed[~keep] > 0):
        return math.inf, 0.0, 0.0, int(n)
    o = observed[keep].astype(np.float64)
    p = probs[keep] / probs[keep].sum()
    k = float(len(p))
    e = n * p
    x2 = float(np.sum((o - e) ** 2 / e))
    var = 2.0 * (k - 1.0) + (float(np.sum(1.0 / p)) - k * k - 2.0 * k + 2.0) / n
    return x2, k - 1.0, max(var, 0.0), int(n)


def z_of(stat: float, mean: float, var: float) -> float:
    if var <= 0:
        return 0.0 if stat == mean else math.inf
    return (stat - mean) / math.sqrt(var)
