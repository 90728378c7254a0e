"""The background compile of the validation kernels covers what a run's checks need.

A first run launches ``python -m engine_core.kernels.precompile`` beside its S1–S4 warm-up;
the checks then load the validation kernels from the on-disk cache instead of compiling
them. If a kernel or a call site changes a signature, the list goes stale and the checks
compile again at first use: this test fails then, naming the signatures, until the list is
regenerated (``python -m engine_core.pipeline.signatures record``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from engine_core.kernels import precompile
from tests.reliability.conftest import REPO

RUN = """
import json, sys
from engine_core.pipeline.signatures import tiny_run_after_warm_up
sigs, compiled = tiny_run_after_warm_up(sys.argv[1])
print(json.dumps({"after_warm_up": sigs, "compiled": compiled}))
"""


def test_the_signature_list_parses_and_names_existing_kernels():
    sigs = precompile.load_signatures()
    assert sigs, "empty signature list"
    import importlib

    for module, name, args in sigs:
        disp = getattr(importlib.import_module(module), name)
        assert hasattr(disp, "compile"), f"{module}.{name} is not a Numba kernel"
        assert isinstance(args, tuple) and args, f"{module}.{name}: no argument types"


def test_type_specs_round_trip_and_reject_what_they_cannot_describe():
    from numba.core import types

    kinds = [types.int64, types.boolean, types.float64, types.literal(3),
             types.Array(types.uint64, 1, "C"), types.Array(types.int32, 2, "C", readonly=True),
             types.Array(types.boolean, 1, "A")]
    for t in kinds:
        spec = precompile.type_spec(t)
        assert json.loads(json.dumps(spec)) == spec
        assert precompile.from_spec(spec) == t, (t, spec)
    with pytest.raises(ValueError, match="cannot be listed"):
        precompile.type_spec(types.unicode_type)
    for bad in ("str", {"array": "object", "ndim": 1, "layout": "C", "readonly": False},
                {"tuple": ["int64"]}, ["int64"]):
        with pytest.raises(ValueError, match="validation_signatures.json"):
            precompile.from_spec(bad)


def test_after_the_background_compile_a_run_compiles_no_validation_kernel(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    subprocess.run([sys.executable, "-m", "engine_core.kernels.precompile", "validation"], cwd=REPO,
                   env=env, check=True, timeout=600)
    assert (tmp_path / "numba" / precompile.MARKER).exists()
    proc = subprocess.run([sys.executable, "-c", RUN, str(tmp_path / "out")], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # the run did use validation kernels after the warm-up (so the check below means something)
    assert any(m.startswith("engine_core.checks") for m, _n, _s in report["after_warm_up"])
    assert report["compiled"] == [], (
        "validation kernels compiled at first use instead of loading from the background "
        f"compile: {report['compiled']}; regenerate the list with "
        "`python -m engine_core.pipeline.signatures record`")


FIRST_RUN = """
import json, sys
from engine_core.cli import main
from engine_core.kernels import precompile
try:
    code = main(["run", "--world", "tiny", "--scenario", "baseline", "--start", "2026-01-01",
                 "--end", "2026-01-03", "--quiet", "--out", sys.argv[1]])
except SystemExit as exc:
    code = exc.code
here = precompile.compiled_here()
checks = sorted(k for k in here if k[0].startswith("engine_core.checks"))
s2_s3 = sorted(k for k in here if k[1] in ("_latent_groups", "_target_rows", "_count_rows"))
s4 = sorted(k for k in here if k[1] == "realise_groups")
print(json.dumps({"code": code, "checks_compiled_here": checks, "s2_s3_compiled_here": s2_s3,
                  "s4_compiled_here": s4}))
"""


def test_a_first_run_compiles_kernels_in_the_background(tmp_path):
    """With an empty cache the run launches both background compiles; its S2/S3 warm-up and
    its checks wait for them and load their kernels: the run's own process compiles neither
    a check kernel nor an S2/S3 kernel."""
    cache = tmp_path / "numba"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    proc = subprocess.run([sys.executable, "-c", FIRST_RUN, str(tmp_path / "out")], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] in (0, None), proc.stderr[-3000:]
    for group in precompile.GROUPS:
        assert precompile.marker_path(cache, group).exists(), group
    assert report["checks_compiled_here"] == []
    assert report["s2_s3_compiled_here"] == []
    assert len(report["s4_compiled_here"]) == 1  # the one kernel the run compiles itself
