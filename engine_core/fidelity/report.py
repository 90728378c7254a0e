"""The fidelity report of one published partition (docs/calibration.md).

``fidelity_report(run_dir, scenario, year)`` reads only what the run published under
``run_dir`` (``time_grid``, ``grouping``, ``bucket_counts``, ``arrival_events``) plus the world
and the policy the run was made with (for the configured values) and the targets of
``configs/fidelity.yaml``, and returns a JSON-able dict: the estimates, and one check per
property with ``passed`` True, False, or None when the partition holds too little data to judge.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engine_core.config import Policy, load_policy, parameter_hash
from engine_core.errors import EngineError
from engine_core.fidelity import estimators as est
from engine_core.fidelity.scan import (
    RUN_DIR_RE,
    EventAggregates,
    TargetAggregates,
    WorldFrame,
    horizon_of,
    partition_dir,
    row_groups,
    scan_counts,
    scan_events,
    target_aggregates,
)
from engine_core.fidelity.tallies import recall_event_tallies
from engine_core.fidelity.targets import FidelityTargets, load_targets
from engine_core.kernels.parallel import side_pool
from engine_core.schemas import DEMAND_CLASSES
from engine_core.world import World, load_world
from engine_core.world.intensity import series_kappa

Progress = Callable[[str], None]

# Every check of the report: code and what it judges (docs/calibration.md).
CHECKS: tuple[tuple[str, str], ...] = (
    ("FIDELITY_PROFILE_JSD", "each class's local hour-of-week profile vs its configured one"),
    ("FIDELITY_WEEKDAY_EVENING_PEAK", "in-person retail, weekdays: evening peak above noon"),
    ("FIDELITY_SATURDAY_NOON_PEAK", "in-person retail, Saturday: noon peak above evening"),
    ("FIDELITY_LATE_PEAK", "in-person retail, Friday-Sunday: a small peak around 23:00"),
    ("FIDELITY_NIGHT_SHARE", "in-person retail: share of arrivals between 00:00 and 06:00"),
    ("FIDELITY_WEEKEND_SHARE", "in-person retail: share of arrivals on the weekend"),
    ("FIDELITY_OVERDISPERSION", "Fano factor of same-hour-of-week counts above one"),
    ("FIDELITY_NB2_KAPPA", "NB2 dispersion re-estimated per class vs configured"),
    ("FIDELITY_SIZE_TAIL", "merchant rank-size tail exponent (MLE) vs the Zipf target"),
    ("FIDELITY_PAYDAY", "payday uplift vs configured and the published range"),
    ("FIDELITY_PRE_HOLIDAY", "uplift on the day before a public holiday vs configured"),
    ("FIDELITY_HOLIDAY", "effect of nationwide public holidays vs configured"),
    ("FIDELITY_REGIONAL_HOLIDAY", "regional holidays move their own zones only"),
    ("FIDELITY_LATENT_COMOVEMENT", "co-movement within latent groups vs configured sigma, rho"),
    ("FIDELITY_DST_GAP", "no local time inside a spring-forward gap"),
    ("FIDELITY_DST_FOLD", "the repeated autumn hour carries both occurrences"),
)


def _check(code: str, passed: bool | None, value: Any, target: Any, detail: str) -> dict:
    return {"code": code, "passed": passed, "value": value, "target": target, "detail": detail}


def _run_identity(run_dir: str, scenario: str, year: int) -> dict[str, Any]:
    path = Path(partition_dir(run_dir, "validation", scenario, year)) / "report.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("identity", {})
    except (OSError, ValueError):
        return {}


def _resolve_inputs(
    run_dir: str, scenario: str, year: int, world: World | str | None, policy: Policy | None
) -> tuple[World, Policy, dict[str, Any]]:
    """World and policy of the run, checked against the identity the run dir is filed under
    (``<world_fp[:12]>/<parameter_hash[:12]>/seed=<seed>``)."""
    filed = RUN_DIR_RE.search(run_dir)
    fp_prefix, ph_prefix = (filed.group(1), filed.group(2)) if filed else ("", "")
    identity = _run_identity(run_dir, scenario, year)
    explicit = world is not None
    if world is None:
        source = identity.get("world")
        if not source:
            raise EngineError(
                "FIDELITY_RUN_NOT_FOUND",
                f"{run_dir} has no validation report naming its world; pass the world",
                key=run_dir,
            )
        world = load_world(source)
    elif isinstance(world, str):
        world = load_world(world)
    policy = policy or load_policy()
    notes = {"world_fingerprint": world.fingerprint, "parameter_hash": parameter_hash(policy)}
    if not world.fingerprint.startswith(fp_prefix):
        if not explicit:
            raise EngineError(
                "FIDELITY_WORLD_MISMATCH",
                f"world {world.source} has fingerprint {world.fingerprint[:12]}, the run dir "
                f"is filed under {fp_prefix}: pass the world the run was made with",
                key=fp_prefix,
            )
        notes["world_mismatch"] = f"run filed under {fp_prefix}"
    if not notes["parameter_hash"].startswith(ph_prefix):
        raise EngineError(
            "FIDELITY_POLICY_MISMATCH",
            f"policy hash {notes['parameter_hash'][:12]} differs from the run's {ph_prefix}: "
            "pass the policy the run was made with",
            key=ph_prefix,
        )
    return world, policy, notes


def _choose_groups(run_dir: str, scenario: str, year: int, frame: WorldFrame,
                   n_groups: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The ``n_groups`` latent groups with the most expected arrivals among those of at least
    two series, each split into two halves of alternating series (by scale): member slot per
    series (2·group + half, −1 elsewhere) and each group's configured σ and L."""
    path = partition_dir(run_dir, "grouping", scenario, year)
    tables = list(row_groups(path, ["merchant_id", "legal_country_iso", "zone_tzid",
                                    "channel_group", "group_id", "sigma", "length_scale"]))
    slot = np.full(frame.series_zone.size, -1, dtype=np.int64)
    if not tables:
        return slot, []
    g = pl.concat([pl.from_arrow(t) for t in tables]).with_columns(
        pl.col("legal_country_iso", "zone_tzid", "channel_group").cast(pl.String)
    ).join(frame.series_frame(), on=["merchant_id", "legal_country_iso", "zone_tzid",
                                     "channel_group"])
    scale = frame.world.series.column("scale").to_numpy()
    g = g.with_columns(pl.Series("scale", scale[g["series"].to_numpy()]))
    sizes = (g.group_by("group_id").agg(pl.col("scale").sum(), pl.len().alias("n"),
                                        pl.col("sigma").first(), pl.col("length_scale").first())
             .filter(pl.col("n") >= 2).sort(["scale", "group_id"], descending=[True, False])
             .head(n_groups))
    info = []
    for gi, row in enumerate(sizes.iter_rows(named=True)):
        members = g.filter(pl.col("group_id") == row["group_id"]).sort(
            ["scale", "series"], descending=[True, False])
        ser = members["series"].to_numpy()
        slot[ser] = 2 * gi + (np.arange(ser.size) % 2)
        info.append({"group_id": row["group_id"], "sigma": row["sigma"],
                     "length_scale": row["length_scale"], "series": int(ser.size)})
    return slot, info


def _profile_checks(ev: EventAggregates, tg: TargetAggregates, t: FidelityTargets) -> tuple[
        list[dict], dict]:
    p = t.profiles
    checks = []
    classes = [DEMAND_CLASSES.index(c) for c in p.in_person_classes]
    realised = ev.class_how[classes].sum(axis=0)
    jsd = {}
    for c, name in enumerate(DEMAND_CLASSES):
        if ev.class_how[c].sum() >= p.min_events and tg.class_how[c].sum() > 0:
            jsd[name] = est.jensen_shannon_bits(ev.class_how[c], tg.class_how[c])
    worst = max(jsd.values()) if jsd else math.nan
    checks.append(_check(
        "FIDELITY_PROFILE_JSD", bool(worst <= p.jsd_max_bits) if jsd else None,
        jsd, p.jsd_max_bits,
        "Jensen-Shannon divergence (bits) of each class's realised local hour-of-week profile "
        "from its configured one (λ over the partition, physical arrivals)"))
    enough = realised.sum() >= p.min_events
    margin = 1.0 + p.peak_margin
    weekday = est.hour_shares(realised, p.weekdays)
    sat = est.hour_shares(realised, [p.saturday])
    noon_w, eve_w = weekday[p.noon_hours].sum(), weekday[p.evening_hours].sum()
    noon_s, eve_s = sat[p.noon_hours].sum(), sat[p.evening_hours].sum()
    checks.append(_check(
        "FIDELITY_WEEKDAY_EVENING_PEAK", bool(eve_w > noon_w * margin) if enough else None,
        {"evening": float(eve_w), "noon": float(noon_w)}, "evening > noon",
        "in-person classes, weekdays: hourly share of the evening hours above the noon hours"))
    checks.append(_check(
        "FIDELITY_SATURDAY_NOON_PEAK", bool(noon_s > eve_s * margin) if enough else None,
        {"noon": float(noon_s), "evening": float(eve_s)}, "noon > evening",
        "in-person classes, Saturday: hourly share of the noon hours above the evening hours"))
    late = {}
    for d in p.late_days:
        sh = est.hour_shares(realised, [d])
        late[str(d)] = {"late": float(sh[p.late_hours].mean()),
                        "before": float(sh[p.late_reference_hours].mean())}
    checks.append(_check(
        "FIDELITY_LATE_PEAK",
        bool(all(v["late"] > v["before"] * margin for v in late.values())) if enough else None,
        late, "late > before on each late day",
        "in-person classes, Friday-Sunday (Monday = 0): a small peak at the late hours"))
    night = est.night_share(realised, *p.night_hours)
    lo, hi = p.night_share
    checks.append(_check("FIDELITY_NIGHT_SHARE", bool(lo <= night <= hi) if enough else None,
                         night, [lo, hi], "in-person classes: share of arrivals at local night"))
    weekend = est.weekend_share(realised)
    lo, hi = p.weekend_share
    checks.append(_check("FIDELITY_WEEKEND_SHARE", bool(lo <= weekend <= hi) if enough else None,
                         weekend, [lo, hi], "in-person classes: share on Saturday and Sunday"))
    all_phys = ev.class_how.sum(axis=0)
    summary = {
        "in_person_weekday_hour_shares": weekday.round(5).tolist(),
        "in_person_saturday_hour_shares": sat.round(5).tolist(),
        "physical_night_share": est.night_share(all_phys, *p.night_hours),
        "physical_weekend_share": est.weekend_share(all_phys),
    }
    return checks, summary


def _uplift_check(code: str, u: dict, t: FidelityTargets, extra_ok: bool | None = True,
                  detail: str = "", target: Any = None) -> dict:
    if not u.get("cells") or not math.isfinite(u.get("realised", math.nan)):
        return _check(code, None, u, target, detail + " (no such days in the partition)")
    tol = max(t.calendar.uplift_floor, t.calendar.uplift_z_max * u["se"])
    ok = abs(u["realised"] - u["configured"]) <= tol
    u = u | {"tolerance": tol}
    return _check(code, bool(ok and (extra_ok is not False)), u, target, detail)


def fidelity_report(
    run_dir: str,
    scenario: str,
    year: int,
    world: World | str | None = None,
    policy: Policy | None = None,
    targets: FidelityTargets | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The fidelity report of partition (scenario, year) of the run under ``run_dir``."""
    t = targets or load_targets()
    world, policy, notes = _resolve_inputs(run_dir, scenario, year, world, policy)
    horizon = horizon_of(run_dir, scenario, year)
    frame = WorldFrame(world, scenario, horizon, policy.routing.p_virtual_hybrid)
    slot, groups = _choose_groups(run_dir, scenario, year, frame, t.latent.groups)
    n_groups = max(1, len(groups))
    # the target intensity (NumPy on one core) is summed on a thread of its own while the
    # published rows are read; its progress is told here, on the caller's thread
    with side_pool(1, "fidelity-target") as pool:
        target = pool.submit(target_aggregates, frame, slot, n_groups)
        ev = recall_event_tallies(run_dir, scenario, year, frame)
        if ev is None:
            ev = scan_events(frame, partition_dir(run_dir, "arrival_events", scenario, year),
                             progress)
        elif progress:
            progress(f"arrival_events: the tallies of {ev.events:,} rows taken by the S4 "
                     "rules' pass")
        moments = est.Nb2Moments(len(DEMAND_CLASSES))
        cn = scan_counts(frame, partition_dir(run_dir, "bucket_counts", scenario, year), slot,
                         n_groups, t.dispersion.kappa_mu_min, moments, progress)
        tg = target.result()
    if progress:
        progress(f"target intensity: {len(frame.zones)} zones")
    checks, profile_summary = _profile_checks(ev, tg, t)

    # overdispersion
    fano_how, fano, used = est.fano_by_hour_of_week(cn.sum_n, cn.sum_n2, cn.weeks,
                                                     t.dispersion.fano_min_mean)
    checks.append(_check(
        "FIDELITY_OVERDISPERSION", bool(fano >= t.dispersion.fano_min) if used else None,
        {"median_fano": fano, "series_hours": used}, f">= {t.dispersion.fano_min}",
        "median variance/mean of a series' counts at the same local hour of week across weeks"))
    # NB2 kappa
    kappa_hat, rel_se = moments.estimate()
    configured = series_kappa(world, scenario, policy)
    per_class, judged, bad = {}, 0, []
    for c, name in enumerate(DEMAND_CLASSES):
        sel = frame.series_class == c
        if not sel.any() or not math.isfinite(kappa_hat[c]):
            continue
        k_cfg = float(np.median(configured[sel]))
        entry = {"estimated": float(kappa_hat[c]), "configured": k_cfg,
                 "rel_se": float(rel_se[c]), "rows": int(moments.rows[c])}
        if rel_se[c] <= t.dispersion.kappa_se_max:
            judged += 1
            if abs(kappa_hat[c] / k_cfg - 1) > t.dispersion.kappa_relative_tolerance:
                bad.append(name)
        per_class[name] = entry
    checks.append(_check(
        "FIDELITY_NB2_KAPPA", (not bad) if judged else None, per_class,
        f"within ±{t.dispersion.kappa_relative_tolerance:.0%} of configured",
        f"NB2 κ re-estimated by moments from bucket counts with μ ≥ {t.dispersion.kappa_mu_min}"
        f"; classes off target: {bad}"))
    # size tail
    zeta, zeta_se, k = est.tail_exponent_mle(ev.merchant_total, t.size.tail_fraction)
    ok_tail = abs(zeta - t.size.tail_exponent) <= t.size.tail_exponent_tolerance
    checks.append(_check(
        "FIDELITY_SIZE_TAIL", bool(ok_tail) if k >= 10 else None,
        {"exponent": zeta, "se": zeta_se, "tail_merchants": k,
         "top_1pct_share": est.top_share(ev.merchant_total, 0.01)},
        [t.size.tail_exponent - t.size.tail_exponent_tolerance,
         t.size.tail_exponent + t.size.tail_exponent_tolerance],
        "maximum-likelihood exponent of P(S > s) ∝ s^-ζ over the largest merchants' arrivals"))
    # event studies
    flags = frame.calendar_flags()
    others = {k: flags["any"] & ~flags[k] for k in flags}
    ordinary = ~flags["any"]
    R, E, E0 = ev.loc_day, tg.loc_day, tg.loc_day_plain
    event_study = {}

    def only(kind: str) -> np.ndarray:
        other_kinds = [k for k in ("payday", "bills_due", "pre_holiday", "holiday",
                                   "regional_holiday", "campaign") if k != kind]
        mask = flags[kind].copy()
        for k in other_kinds:
            mask &= ~flags[k]
        return mask

    for kind in ("payday", "pre_holiday", "holiday", "regional_holiday", "bills_due"):
        event_study[kind] = est.event_uplift(R, E, E0, only(kind), ordinary)
    elsewhere = flags["regional_elsewhere"] & ~flags["any"]
    event_study["regional_elsewhere"] = est.event_uplift(R, E, E0, elsewhere, ordinary)
    del others
    pay = event_study["payday"]
    lo, hi = t.calendar.payday_uplift
    in_range = lo <= pay.get("realised", math.nan) <= hi
    checks.append(_uplift_check(
        "FIDELITY_PAYDAY", pay, t, in_range, "month-end payday: realised uplift vs configured, "
        "and within the published range", target=[lo, hi]))
    pre = event_study["pre_holiday"]
    checks.append(_uplift_check(
        "FIDELITY_PRE_HOLIDAY", pre, t,
        pre.get("realised", 0) >= t.calendar.pre_holiday_uplift_min,
        "day before a public holiday: realised uplift vs configured",
        target=f">= {t.calendar.pre_holiday_uplift_min}"))
    checks.append(_uplift_check(
        "FIDELITY_HOLIDAY", event_study["holiday"], t,
        detail="nationwide public holidays: realised effect vs configured"))
    reg, away = event_study["regional_holiday"], event_study["regional_elsewhere"]
    reg_check = _uplift_check("FIDELITY_REGIONAL_HOLIDAY", reg, t,
                              detail="regional holiday in its own zones")
    away_check = _uplift_check("FIDELITY_REGIONAL_HOLIDAY", away, t,
                               detail="the same days in the country's other zones")
    verdicts = [c["passed"] for c in (reg_check, away_check) if c["passed"] is not None]
    checks.append(_check(
        "FIDELITY_REGIONAL_HOLIDAY", (all(verdicts) if verdicts else None),
        {"in_region": reg_check["value"], "elsewhere": away_check["value"]},
        "in region as configured; elsewhere unmoved (configured 1)",
        "regional holidays move their own zones only"))
    # latent co-movement
    lat = []
    for gi, info in enumerate(groups):
        s_hat, r_hat, rel_se = est.comovement(cn.group_hours[gi, 0], cn.group_hours[gi, 1],
                                              tg.group_hours[gi, 0], tg.group_hours[gi, 1])
        phi = math.exp(-1.0 / info["length_scale"])
        lat.append(info | {"sigma_hat": s_hat, "rho_hat": r_hat, "rho": phi, "rel_se": rel_se})
    # groups whose count noise leaves the factor's covariance known to rel_se_max or better
    good = [g for g in lat if math.isfinite(g["sigma_hat"]) and math.isfinite(g["rho_hat"])
            and g["rel_se"] <= t.latent.rel_se_max]
    if good:
        ratio = float(np.median([g["sigma_hat"] / g["sigma"] for g in good]))
        drho = float(np.median([g["rho_hat"] - g["rho"] for g in good]))
        ok = (abs(ratio - 1) <= t.latent.sigma_relative_tolerance
              and abs(drho) <= t.latent.rho_tolerance)
        checks.append(_check(
            "FIDELITY_LATENT_COMOVEMENT", bool(ok),
            {"median_sigma_ratio": ratio, "median_rho_difference": drho, "groups": len(good)},
            {"sigma_ratio": [1 - t.latent.sigma_relative_tolerance,
                             1 + t.latent.sigma_relative_tolerance],
             "rho_difference": t.latent.rho_tolerance},
            "cross-covariance of the two halves of each large latent group vs configured σ, ρ"))
    else:
        checks.append(_check("FIDELITY_LATENT_COMOVEMENT", None, {"groups": len(lat)}, None,
                             "no latent group with two series and enough arrivals"))
    # DST
    gaps = {k: v for k, v in ev.dst_gap.items() if v}
    checks.append(_check("FIDELITY_DST_GAP", not gaps, {"transitions": len(ev.dst_gap),
                                                        "arrivals_in_gap": gaps}, 0,
                         "no local time inside a spring-forward gap"))
    judged_folds = {k: v for k, v in ev.dst_fold.items() if sum(v) >= t.dst.fold_min_events}
    bad_folds = {k: v for k, v in judged_folds.items() if min(v) == 0}
    checks.append(_check(
        "FIDELITY_DST_FOLD", (not bad_folds) if judged_folds else None,
        {"folds": ev.dst_fold, "judged": len(judged_folds), "one_sided": bad_folds},
        "both occurrences of the repeated hour carry arrivals",
        "autumn fall-back: the repeated local hour holds arrivals of both UTC offsets"))

    failed = [c["code"] for c in checks if c["passed"] is False]
    return {
        "passed": not failed,
        "failed": failed,
        "not_judged": [c["code"] for c in checks if c["passed"] is None],
        "run_dir": run_dir,
        "scenario": scenario,
        "year": year,
        "horizon": {"start": horizon.start.isoformat(), "hours": horizon.n_hours},
        "events": ev.events,
        "world": world.source,
        **notes,
        "checks": checks,
        "profiles": profile_summary | {
            "realised_class_how": {n: ev.class_how[c].tolist() for c, n in
                                   enumerate(DEMAND_CLASSES) if ev.class_how[c].sum() > 0},
            "target_class_how": {n: tg.class_how[c].tolist() for c, n in
                                 enumerate(DEMAND_CLASSES) if tg.class_how[c].sum() > 0},
        },
        "fano_by_hour_of_week": [None if not math.isfinite(v) else float(v) for v in fano_how],
        "merchant_arrivals": sorted((float(v) for v in ev.merchant_total if v > 0),
                                    reverse=True),
        "event_study": event_study,
        "latent_groups": lat,
    }


def summary_line(report: dict[str, Any]) -> dict[str, Any]:
    """The short form the CLI prints: verdict, failures and each check's headline value."""
    return {
        "passed": report["passed"],
        "failed": report["failed"],
        "not_judged": report["not_judged"],
        "events": report["events"],
        "checks": {c["code"]: c["passed"] for c in report["checks"]},
    }

