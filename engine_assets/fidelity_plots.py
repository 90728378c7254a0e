"""Plots of a fidelity report, rendered to PNG bytes with matplotlib's object API (Agg canvas,
no pyplot state), like ``engine_assets.plots``: the hour × weekday heat map against its target,
the log-log rank-size plot with the fitted tail, and the event-study bars."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine_assets.plots import _empty, _figure, _png
from engine_core.fidelity import estimators as est

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def profile_heatmap_png(report: dict[str, Any], classes: list[str]) -> bytes:
    """Realised and target share of arrivals per (weekday, local hour), pooled over
    ``classes``, side by side, with their Jensen-Shannon divergence."""
    real = report["profiles"]["realised_class_how"]
    targ = report["profiles"]["target_class_how"]
    names = [c for c in classes if c in real and c in targ]
    if not names:
        return _empty("profiles")
    r = np.sum([np.asarray(real[c]) for c in names], axis=0)
    t = np.sum([np.asarray(targ[c]) for c in names], axis=0)
    r, t = r / r.sum(), t / t.sum()
    fig, axes = _figure(10.0, 3.4, ncols=2)
    vmax = float(max(r.max(), t.max()))
    for ax, data, title in ((axes[0], r, "realised"), (axes[1], t, "target (configured λ)")):
        im = ax.imshow(est.day_hour(data), aspect="auto", cmap="viridis", vmin=0, vmax=vmax)
        ax.set_yticks(range(7), _WEEKDAYS)
        ax.set_xticks(range(0, 24, 3))
        ax.set_xlabel("local hour")
        ax.set_title(title)
    fig.colorbar(im, ax=axes[1], label="share of arrivals")
    fig.suptitle(f"{', '.join(names)}: JSD {est.jensen_shannon_bits(r, t):.4f} bits")
    return _png(fig)


def rank_size_png(report: dict[str, Any]) -> bytes:
    """Merchant arrivals against rank on log-log axes, with the fitted tail line."""
    sizes = np.asarray(report.get("merchant_arrivals") or [], dtype=np.float64)
    if sizes.size == 0:
        return _empty("merchants")
    check = next(c for c in report["checks"] if c["code"] == "FIDELITY_SIZE_TAIL")
    zeta, k = check["value"]["exponent"], check["value"]["tail_merchants"]
    rank = np.arange(1, sizes.size + 1)
    fig, (ax,) = _figure(5.5, 4.0)
    ax.loglog(rank, sizes, ".", ms=3, color="#4477aa", label="merchants")
    if math.isfinite(zeta) and zeta > 0 and k >= 2:
        # P(S > s) ∝ s^-ζ  ⇔  size ∝ rank^(-1/ζ); anchored at the tail's smallest merchant
        r = np.arange(1, k + 1)
        ax.loglog(r, sizes[k - 1] * (r / k) ** (-1.0 / zeta), color="#cc3311",
                  label=f"MLE tail: ζ = {zeta:.2f} (top {k})")
    ax.set_xlabel("rank")
    ax.set_ylabel("arrivals")
    ax.legend(fontsize=7)
    ax.set_title("rank-size of merchants")
    return _png(fig)


def event_study_png(report: dict[str, Any]) -> bytes:
    """Realised and configured uplift per kind of calendar day, with ±2 standard errors."""
    study = {k: v for k, v in report["event_study"].items()
             if v.get("cells") and math.isfinite(v.get("realised", math.nan))}
    if not study:
        return _empty("event study")
    kinds = list(study)
    x = np.arange(len(kinds))
    real = [study[k]["realised"] for k in kinds]
    conf = [study[k]["configured"] for k in kinds]
    err = [2 * study[k]["se"] for k in kinds]
    fig, (ax,) = _figure(7.0, 3.2)
    ax.bar(x - 0.2, real, 0.4, yerr=err, color="#4477aa", label="realised (±2 se)")
    ax.bar(x + 0.2, conf, 0.4, color="#cc3311", label="configured")
    ax.axhline(1.0, color="#999999", lw=1, ls="--")
    ax.set_xticks(x, kinds, fontsize=7, rotation=15)
    ax.set_ylabel("arrivals vs an ordinary day")
    ax.legend(fontsize=7)
    ax.set_title("event studies")
    return _png(fig)
