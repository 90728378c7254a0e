"""Fidelity of the output to published payment statistics (docs/calibration.md).

``fidelity_report(run_dir, scenario, year)`` computes, from a run's published Parquet alone
(plus the world and policy for the configured values), hour × weekday profiles, overdispersion,
NB2 dispersion, the merchant size tail, payday and holiday event studies, latent co-movement
and DST correctness, and judges each against ``configs/fidelity.yaml``. No Dagster here.
"""

from engine_core.fidelity.report import fidelity_report, summary_line
from engine_core.fidelity.targets import FidelityTargets, load_targets

__all__ = ["FidelityTargets", "fidelity_report", "load_targets", "summary_line"]
