"""S1–S5 end to end: the function behind the CLI and the library entry point."""

from __future__ import annotations

import time
from typing import Any

from engine_core.io.publish import wait_discards
from engine_core.pipeline.engine import Engine, peak_rss_mb


def run_all(engine: Engine) -> dict[str, Any]:
    """Run every state in order; return the summary the CLI prints as its last line."""
    t0 = time.perf_counter()
    states: dict[str, Any] = {}
    _world, world_rules = engine.run_world()
    failed_world = [r.code for r in world_rules if not r.passed and r.blocking]
    if failed_world:
        return _summary(engine, states, 0, False, failed_world, t0)
    for name, fn in (("s1", engine.run_s1), ("s2", engine.run_s2), ("s3", engine.run_s3),
                     ("s4", engine.run_s4)):
        res = fn()
        states[name] = res.summary()
    s5, report, passed = engine.run_s5()
    wait_discards()
    states["s5"] = s5.summary()
    failed = [r["code"] for r in report["rules"] if not r["passed"]]
    events = states["s4"].get("events", 0)
    return _summary(engine, states, events, passed, failed, t0)


def _summary(engine: Engine, states: dict[str, Any], events: int, passed: bool,
             failed: list[str], t0: float) -> dict[str, Any]:
    return {
        "states": states,
        "events": int(events),
        "elapsed_s": round(time.perf_counter() - t0, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "jit_compile_s": round(engine.jit_compile_s, 3),
        "passed": bool(passed),
        "failed_rules": failed,
        "out": engine.storage.uri_for(engine.run_root),
        "years": engine.years,
        **engine.identity(),
    }
