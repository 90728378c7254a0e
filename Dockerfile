# The arrival engine image: the Dagster code location (gRPC server), the run worker that
# K8sRunLauncher starts for each run, and a Dask worker, from one wheel.
#
#   pip wheel --no-deps -w dist .          # the project's wheel, into the build context
#   podman build -t arrival-engine:0.1.0 . # or docker build
#
# BASE_IMAGE must provide Python 3.11 with the venv module (python:3.11-slim does; on Debian,
# python3 + python3-venv). docs/operations.md, "The image".
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# Compiled code in the Numba cache is tied to a CPU model. "generic" makes the cache baked in
# below valid on every x86-64 node; name the nodes' model (e.g. "skylake-avx512") for faster
# kernels on a homogeneous pool. Build and run must agree, so it is fixed in the image.
ARG NUMBA_CPU_NAME=generic
# Extras of the wheel: deploy = dagster-postgres, dagster-aws, dagster-k8s.
ARG ENGINE_EXTRAS=deploy
# Dependencies come from dist/ first, then from the package index. Without index access, fill
# dist/ with every wheel (`pip wheel -w dist 'dist/arrival_engine-<v>-py3-none-any.whl[deploy]'`)
# and build with --build-arg PIP_NO_INDEX=1.
ARG PIP_NO_INDEX=0

ENV VIRTUAL_ENV=/opt/arrival-engine \
    PATH=/opt/arrival-engine/bin:$PATH \
    NUMBA_CPU_NAME=${NUMBA_CPU_NAME} \
    XDG_CACHE_HOME=/opt/arrival-engine/cache \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 engine \
    && useradd --system --uid 10001 --gid engine --create-home --home-dir /home/engine engine

COPY dist/ /tmp/dist/
RUN python3 -m venv "$VIRTUAL_ENV" \
    && set -- /tmp/dist/arrival_engine-*.whl \
    && [ "$#" -eq 1 ] && [ -f "$1" ] \
    && pip install --find-links /tmp/dist "${1}[${ENGINE_EXTRAS}]" \
    && rm -rf /tmp/dist \
    && install -d -o engine -g engine "$XDG_CACHE_HOME"

USER engine
WORKDIR /home/engine
# Fill the Numba cache: one week of the tiny world through every state and every rule compiles
# every kernel a run uses, so a pod starts computing at once instead of compiling for ~10 s.
# The output is thrown away; the run doubles as a smoke test of the installed wheel.
RUN arrival-engine run --world tiny --scenario baseline --start 2026-03-02 --end 2026-03-09 \
        --seed 42 --out /tmp/warm-up --quiet \
    && rm -rf /tmp/warm-up

ENV DAGSTER_HOME=/home/engine/dagster_home
RUN mkdir -p "$DAGSTER_HOME"

# Code location: `dagster api grpc` on port 4000 (the Helm chart's user deployment). A run
# worker or Dask worker overrides the command (K8sRunLauncher does so itself).
EXPOSE 4000
CMD ["dagster", "api", "grpc", "-m", "engine_assets.definitions", "-a", "defs", \
     "-h", "0.0.0.0", "-p", "4000"]
