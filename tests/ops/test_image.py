"""The image (Dockerfile): the project as a wheel, installed non-editable with its deploy extra,
a warm Numba cache, serving the code location.

CI machines have no container registry and a container build there takes far longer than this
suite's budget (docs/operations.md, "The image"), so the default test runs the Dockerfile's
steps in a fresh virtual environment instead: build the wheel (`pip wheel --no-deps`), install
it from the wheel directory with `[deploy]`, fill the Numba cache with the same tiny-world run,
check that a new process then compiles (almost) nothing, and start the code location's gRPC
server from the installed package, outside the repository. With ENGINE_IMAGE_BUILD=podman the
second test builds the real image with podman (base from debootstrap when no registry is
reachable) and runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from benchmarks.bench_backfill import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
WARM_UP = ["run", "--world", "tiny", "--scenario", "baseline", "--start", "2026-03-02",
           "--end", "2026-03-09", "--seed", "42", "--quiet"]  # fmt: skip  (as in the Dockerfile)


def build_wheel(dist: Path) -> Path:
    # from a copy of the tree: setuptools leaves build/ behind in the tree it builds
    src = dist.parent / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "data", "artifacts", "*.egg-info", "__pycache__",
        ".pytest_cache", ".ruff_cache", ".hypothesis"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    wheels = list(dist.glob("arrival_engine-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def wheel_ships_policy(wheel: Path) -> bool:
    """The installed package reads its policy and presets from inside itself (SPEC §2):
    configs/ travels as engine_core.configs, and nothing of the checkout but the packages."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    return ("engine_core/configs/policy.yaml" in names
            and "engine_core/configs/worlds/tiny.yaml" in names
            and not any(n.startswith(("configs/", "tests/", "benchmarks/")) for n in names))


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh host: nothing of this checkout, its caches or its settings."""
    drop = ("ENGINE_", "NUMBA_", "DAGSTER_", "XDG_CACHE_HOME", "VIRTUAL_ENV", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


def run_warm_up(cli: list[str], cwd: Path, env: dict[str, str], out: str) -> dict:
    done = subprocess.run([*cli, *WARM_UP, "--out", out], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines else {}
    summary["_returncode"] = done.returncode
    summary["_stderr"] = done.stderr[-2000:]
    return summary


def test_the_wheel_installs_fills_the_numba_cache_and_serves_the_code_location(tmp_path):
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "host"
    work.mkdir()
    wheel = build_wheel(dist)
    assert wheel_ships_policy(wheel)
    # Dockerfile: python3 -m venv; pip install --find-links /tmp/dist "<wheel>[deploy]"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    done = subprocess.run([*pip, "install", "-q", "--find-links", str(dist), f"{wheel}[deploy]"],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout

    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"), NUMBA_CPU_NAME="generic")
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import engine_core, engine_assets, dagster_postgres, dagster_k8s, dagster_aws, os; "
         "print(engine_core.__file__); print(os.environ['NUMBA_CACHE_DIR'])"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    module_file, cache_dir = where.stdout.split()
    assert Path(module_file).is_relative_to(venv), "the package must come from the wheel"
    assert Path(cache_dir).is_relative_to(tmp_path / "cache")

    # The code location, as the image's default command serves it.
    port = free_port()
    grpc = subprocess.Popen(
        [str(venv / "bin" / "dagster"), "api", "grpc", "-m", "engine_assets.definitions",
         "-a", "defs", "-h", "127.0.0.1", "-p", str(port)],
        cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            assert grpc.poll() is None, grpc.stderr.read().decode()[-3000:]
            health = subprocess.run(
                [str(venv / "bin" / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1",
                 "-p", str(port)], env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if health.returncode == 0:
                break
            assert time.monotonic() < deadline, f"code server not healthy: {health.stderr}"
            time.sleep(1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(grpc.pid, signal.SIGKILL)
        grpc.wait(timeout=30)

    cli = [str(venv / "bin" / "arrival-engine")]
    first = run_warm_up(cli, work, env, str(work / "out1"))
    assert first["_returncode"] == 0 and first["passed"] is True, first["_stderr"]
    index_files = list(Path(cache_dir).rglob("*.nbi"))
    assert len(index_files) >= 5, "the warm-up must fill the Numba cache"

    # what a new user does first, outside the checkout: export a preset, run a month
    export = subprocess.run([*cli, "world", "export", "--preset", "tiny", "--out",
                             str(work / "world")], cwd=work, env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert export.returncode == 0, export.stderr[-2000:]
    assert (work / "world" / "merchants.parquet").is_file()
    month = [*WARM_UP[:5], "--start", "2026-01-01", "--end", "2026-02-01", "--seed", "42",
             "--quiet"]  # fmt: skip
    done = subprocess.run([*cli, *month, "--out", str(work / "out2")], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    second = json.loads(done.stdout.strip().splitlines()[-1])
    assert second["passed"] is True and second["events"] > 0
    assert (Path(second["out"]) / "validation" / "scenario=baseline" / "year=2026"
            / "_passed.flag").is_file()
    print(f"\njit_compile_s: empty cache {first['jit_compile_s']}, warm {second['jit_compile_s']}")
    assert second["jit_compile_s"] < max(2.0, first["jit_compile_s"] / 4)


# ------------------------------------------------------------------------------ podman
def _podman(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(2400)
@pytest.mark.skipif(os.environ.get("ENGINE_IMAGE_BUILD") != "podman",
                    reason="builds the container image; set ENGINE_IMAGE_BUILD=podman")  # fmt: skip
def test_the_image_builds_and_runs_with_podman(tmp_path):
    """podman build --isolation=chroot (the host's cgroup v1 rules out the default runtime for
    RUN steps) from a wheelhouse, then podman run (runc, low ulimits): non-root, no compile."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman buildah runc debootstrap)")
    base = os.environ.get("ENGINE_IMAGE_BASE", "localhost/arrival-engine-base:bookworm")
    if _podman("image", "exists", base).returncode != 0:
        rootfs = tmp_path / "rootfs"
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv", "bookworm",
             str(rootfs), "http://deb.debian.org/debian"],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(["podman", "import", "-", base], stdin=tar.stdout,
                                  capture_output=True, text=True, timeout=600)  # fmt: skip
        tar.wait()
        assert imported.returncode == 0, imported.stderr

    context = tmp_path / "context"
    dist = context / "dist"
    wheel = build_wheel(dist)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(dist),
                           f"{wheel}[deploy]"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    shutil.copy(REPO / "Dockerfile", context / "Dockerfile")
    shutil.copy(REPO / ".dockerignore", context / ".dockerignore")
    tag = f"localhost/arrival-engine-test:{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    built = _podman("build", "--isolation=chroot", "--build-arg", f"BASE_IMAGE={base}",
                    "--build-arg", "PIP_NO_INDEX=1", "-t", tag, str(context), timeout=1800)
    print(f"\npodman build: {time.monotonic() - started:.0f}s")
    try:
        assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
        run = ["--runtime", "runc", "run", "--rm", "--network", "none",
               "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", tag]
        who = _podman(*run, "id", "-u")
        assert who.returncode == 0 and who.stdout.strip() == "10001", who.stderr
        warm = _podman(*run, "arrival-engine", *WARM_UP, "--out", "/tmp/out")
        assert warm.returncode == 0, warm.stderr[-2000:]
        summary = json.loads(warm.stdout.strip().splitlines()[-1])
        assert summary["passed"] is True
        assert summary["jit_compile_s"] < 2.0, "the image's Numba cache must be warm"
    finally:
        _podman("rmi", "-f", tag)
