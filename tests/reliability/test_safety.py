"""Safety: no user-supplied name escapes the storage root, YAML and Parquet inputs never build
Python objects, nothing a user supplies is unpickled or evaluated, the web UI binds the
loopback interface, and alerts go only where configuration says and carry no secrets."""

from __future__ import annotations

import ast
import http.server
import json
import os
import pickle
import re
import shutil
import threading
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine_core.config import read_yaml_mapping
from engine_core.errors import EngineError
from engine_core.io import RunLayout, Storage
from engine_core.pipeline import Run, RunConfig
from engine_core.world import load_world
from tests.reliability.conftest import REPO, run_cli

FP = "ab" * 32
PH = "cd" * 32
TRAVERSAL_IDS = [
    "../x",
    "..",
    ".",
    "../../etc",
    "/etc",
    "/tmp/x",
    "a/b",
    "a\\b",
    "x/../../y",
    "\u2024\u2024",  # ONE DOT LEADER x2
    "\uff0e\uff0e",  # FULLWIDTH FULL STOP x2 (NFKC: "..")
    "\u2025",  # TWO DOT LEADER
    "x\x00y",
    "\x00",
    "",
    "baseline\n",
    "Baseline",
    "ｂａｓｅｌｉｎｅ",
    "base line",
    "~",
    "$HOME",
    "baseline/",
    "%2e%2e",
]


@pytest.fixture
def layout(tmp_path) -> RunLayout:
    return RunLayout(Storage.open(str(tmp_path / "root")), FP, PH, 42)


# ------------------------------------------------------------------------------ path traversal
@pytest.mark.parametrize("scenario", TRAVERSAL_IDS)
def test_layout_refuses_scenario_ids_that_are_not_one_plain_component(layout, scenario):
    with pytest.raises(EngineError) as info:
        layout.partition_dir("arrival_events", scenario, 2026)
    assert info.value.code == "SCENARIO_INVALID"


@pytest.mark.parametrize(
    "dataset",
    [
        "../x",
        "arrival_events/../../x",
        "/etc",
        "",
        "validation/..",
        "time_grid\x00",
        "ARRIVAL_EVENTS",
        "arrival_events/",
    ],
)
def test_layout_refuses_unknown_dataset_names(layout, dataset):
    with pytest.raises(EngineError) as info:
        layout.partition_dir(dataset, "baseline", 2026)
    assert info.value.code == "LAYOUT_INVALID"


@pytest.mark.parametrize("year", ["2026", "2026/../x", -1, 0, 1970, 9999, 10**6, 2026.0, None])
def test_layout_refuses_years_that_are_not_ints_in_range(layout, year):
    with pytest.raises(EngineError) as info:
        layout.partition_dir("arrival_events", "baseline", year)
    assert info.value.code == "LAYOUT_INVALID"


@pytest.mark.parametrize(
    ("fp", "ph"),
    [
        ("../../etc/passwd", PH),
        (FP, "/abs/olute"),
        (FP, "../" * 8),
        ("AB" * 32, PH),
        (FP, PH + "\x00"),
    ],
)
def test_layout_refuses_digests_that_are_not_hex(tmp_path, fp, ph):
    with pytest.raises(EngineError) as info:
        RunLayout(Storage.open(str(tmp_path)), fp, ph, 42)
    assert info.value.code == "LAYOUT_INVALID"


@settings(max_examples=300, deadline=None)
@given(scenario=st.text(min_size=0, max_size=12))
def test_any_accepted_scenario_stays_one_component_under_the_root(scenario):
    layout = RunLayout(Storage.open("/srv/engine-root"), FP, PH, 42)
    try:
        path = layout.partition_dir("bucket_counts", scenario, 2026)
    except EngineError as exc:
        assert exc.code == "SCENARIO_INVALID"
        return
    assert re.fullmatch(r"[a-z0-9_]+", scenario)
    assert os.path.normpath(path) == path
    assert os.path.commonpath([path, "/srv/engine-root"]) == "/srv/engine-root"
    assert path.split("/")[-2] == f"scenario={scenario}"


@pytest.mark.parametrize("scenario", ["../x", "/tmp/x", "a/b", "\uff0e\uff0e", "x\x00y"])
def test_engine_and_cli_refuse_traversal_before_touching_disk(tmp_path, scenario):
    root = tmp_path / "root"
    before = sorted(tmp_path.rglob("*"))
    cfg = RunConfig(
        world="tiny", scenario=scenario, start=_utc(2026), end=_utc(2026, 2), storage_root=str(root)
    )
    with pytest.raises(EngineError) as info:
        Run.open(cfg)
    assert info.value.code == "SCENARIO_INVALID"
    res = run_cli(
        [
            "run",
            "--world",
            "tiny",
            "--scenario",
            scenario,
            "--start",
            "2026-01-01",
            "--end",
            "2026-02-01",
            "--out",
            str(root),
        ]
    )
    assert res.code == 2 and res.error_line.startswith("SCENARIO_INVALID: ")
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    "key",
    [
        "../x|2026",
        "baseline|../2026",
        "baseline|2026/..",
        "stress/../../x|2026",
        "baseline|20 26",
        "baseline\x00|2026",
        "holiday|2026",
        "baseline|1999a",
    ],
)
def test_dagster_partition_keys_are_parsed_strictly(key):
    from engine_assets.partitions import SCENARIOS, parse_partition_key

    with pytest.raises(Exception) as info:  # noqa: B017 - Dagster or ValueError, both refuse
        parse_partition_key(key)
    assert not isinstance(info.value, AssertionError)
    for s in SCENARIOS:
        assert re.fullmatch(r"[a-z0-9_]+", s)


def _utc(year: int, month: int = 1):
    import datetime as dt

    return dt.datetime(year, month, 1, tzinfo=dt.UTC)


# ------------------------------------------------------------------------------ YAML
@pytest.mark.parametrize(
    "payload",
    [
        "x: !!python/object/apply:os.system ['touch {marker}']",
        "x: !!python/object/new:subprocess.Popen [['touch', '{marker}']]",
        "x: !!python/name:os.system",
        "x: !!python/module:os",
        'x: !!python/object/apply:builtins.exec [\'open("{marker}", "w")\']',
    ],
)
def test_yaml_reader_builds_no_python_objects(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "p.yaml"
    path.write_text(payload.format(marker=marker))
    with pytest.raises(EngineError) as info:
        read_yaml_mapping(path, "POLICY_UNREADABLE")
    assert info.value.code == "POLICY_UNREADABLE"
    assert not marker.exists()


# ------------------------------------------------------------------------------ no pickle/eval
SOURCE_DIRS = ("engine_core", "engine_assets")
FORBIDDEN_MODULES = {
    "pickle",
    "cPickle",
    "_pickle",
    "marshal",
    "shelve",
    "dill",
    "cloudpickle",
    "joblib",
    "jsonpickle",
}
FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_YAML = {
    "unsafe_load",
    "unsafe_load_all",
    "full_load",
    "full_load_all",
    "load_all",
    "Loader",
    "UnsafeLoader",
    "FullLoader",
    "CLoader",
    "CUnsafeLoader",
    "CFullLoader",
}
GREP = re.compile(
    r"\bpickle\b|\bmarshal\b|\beval\(|\bexec\(|yaml\.load\(|yaml\.unsafe_load"
    r"|yaml\.full_load|allow_pickle\s*=\s*True|read_pickle|__reduce__"
)


def _sources() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (REPO / d).rglob("*.py"))


def test_grep_finds_no_pickle_marshal_eval_or_unsafe_yaml():
    hits = []
    for path in _sources():
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if GREP.search(line):
                hits.append(f"{path.relative_to(REPO)}:{no}: {line.strip()}")
    # the one yaml.load call is checked below to use a SafeLoader subclass
    allowed = [h for h in hits if "yaml.load(" in h and "Loader=" in h]
    assert sorted(set(hits) - set(allowed)) == [], hits


def _yaml_loader_is_safe(module_name: str, loader_name: str) -> bool:
    import importlib

    loader = getattr(importlib.import_module(module_name), loader_name)
    return isinstance(loader, type) and issubclass(loader, yaml.SafeLoader)


def test_ast_finds_no_unsafe_deserialisation_or_evaluation():
    problems = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        for node in ast.walk(tree):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names]
                mods = names if isinstance(node, ast.Import) else [node.module or ""]
                for m in mods:
                    if m.split(".")[0] in FORBIDDEN_MODULES:
                        problems.append(f"{where}: imports {m}")
            elif isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Name) and f.id in FORBIDDEN_BUILTINS:
                    problems.append(f"{where}: calls {f.id}()")
                if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                    if f.value.id == "yaml" and f.attr == "load":
                        loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
                        ok = isinstance(loader, ast.Name) and _yaml_loader_is_safe(
                            module, loader.id
                        )
                        ok |= isinstance(loader, ast.Attribute) and loader.attr in (
                            "SafeLoader",
                            "CSafeLoader",
                        )
                        if not ok:
                            problems.append(f"{where}: yaml.load without a SafeLoader")
                    if f.attr in ("load", "loads") and f.value.id in ("np", "numpy"):
                        for k in node.keywords:
                            if k.arg == "allow_pickle" and not (
                                isinstance(k.value, ast.Constant) and k.value.value is False
                            ):
                                problems.append(f"{where}: np.load(allow_pickle=...)")
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id == "yaml" and node.attr in FORBIDDEN_YAML:
                    problems.append(f"{where}: yaml.{node.attr}")
    assert problems == []


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_world_parquet_with_a_pickled_extension_type_is_not_unpickled(tmp_path, tiny_world_dir):
    """``arrow.py_extension_type`` fields carry a pickle; reading a world must not run it."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(marker))

    class PickledExtension(pa.ExtensionType):
        def __init__(self) -> None:
            super().__init__(pa.uint64(), "arrow.py_extension_type")

        def __arrow_ext_serialize__(self) -> bytes:
            return payload

        @classmethod
        def __arrow_ext_deserialize__(cls, storage_type, serialized):
            return cls()

    world = tmp_path / "world"
    shutil.copytree(tiny_world_dir, world)
    m = pq.read_table(world / "merchants.parquet")
    ids = pa.ExtensionArray.from_storage(
        PickledExtension(), m.column("merchant_id").combine_chunks()
    )
    pq.write_table(m.set_column(0, "merchant_id", ids), world / "merchants.parquet")
    try:
        load_world(world)
    except EngineError:
        pass  # refusing the column is fine too; running the payload is not
    assert not marker.exists()
    res = run_cli(["world", "check", str(world)])
    assert res.code in (0, 2)
    assert not marker.exists()


# ------------------------------------------------------------------------------ web UI
def test_web_ui_binds_loopback_by_default():
    import dagster_webserver.cli as webserver_cli
    from dagster._cli.dev import dev_command

    host = {p.name: p for p in webserver_cli.dagster_webserver.params}["host"]
    assert host.default == "127.0.0.1"
    dev_host = {p.name: p for p in dev_command.params}["host"]
    # unset: `dagster dev` hands no host to the webserver, which then uses its own default
    assert dev_host.default in (None, "127.0.0.1") or "UNSET" in repr(dev_host.default)


COMMAND = re.compile(r"(dagster dev|dagster-webserver)\b(.*)")
HOST = re.compile(r"(?:^|\s)(?:-h|--host|--dagit-host)[ =](\S+)")


def _launch_texts() -> list[Path]:
    paths = [REPO / "README.md", REPO / "workspace.yaml", REPO / "dagster.yaml"]
    paths += sorted((REPO / "docs").glob("*.md"))
    paths += sorted((REPO / "engine_assets").rglob("*.py"))
    paths += sorted((REPO / "benchmarks").rglob("*.py"))
    paths += sorted((REPO / "configs").rglob("*.yaml"))
    return [p for p in paths if p.exists()]


def test_documented_ui_commands_bind_loopback():
    commands = []
    for path in _launch_texts():
        text = path.read_text(encoding="utf-8")
        assert "0.0.0.0" not in text, f"{path.relative_to(REPO)} mentions binding all interfaces"
        for line in text.splitlines():
            m = COMMAND.search(line)
            if not m:
                continue
            commands.append(line)
            for value in HOST.findall(m.group(2)):
                assert value.strip("`'\"") in ("127.0.0.1", "localhost", "::1"), line
    assert any("dagster dev" in c for c in commands)  # the docs do show how to start it


# ------------------------------------------------------------------------------ alerts
class _Receiver(http.server.BaseHTTPRequestHandler):
    posts: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).posts.append(
            {"path": self.path, "headers": dict(self.headers), "body": body.decode()}
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@dg.asset(check_specs=[dg.AssetCheckSpec("rows_positive", asset="alert_stand_in")])
def alert_stand_in():
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(
        check_name="rows_positive",
        passed=False,
        description="rows must be positive",
        metadata={"rows": -1},
    )


def test_alerts_go_only_to_the_configured_webhook_and_carry_no_secrets(tmp_path, monkeypatch):
    from engine_assets.alerts import ALERT_KIND
    from engine_assets.resources import resources_from_env
    from engine_assets.sensors import check_failure_alerts

    _Receiver.posts = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    token = "tok-3f9a1c2e7b5d4a60"
    url = f"http://127.0.0.1:{server.server_port}/hook?token={token}"
    secrets = {
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY",
        "DAGSTER_CLOUD_API_TOKEN": "agent:secret:0123456789abcdef",
        "ENGINE_STORAGE_ROOT": str(tmp_path / "data"),
    }
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    try:
        monkeypatch.delenv("ENGINE_ALERT_WEBHOOK", raising=False)
        monkeypatch.delenv("ENGINE_ALERT_LOG", raising=False)
        assert resources_from_env()["alerts"].webhook_url is None  # nothing unless configured
        monkeypatch.setenv("ENGINE_ALERT_WEBHOOK", url)
        resources = resources_from_env()
        assert isinstance(resources["alerts"].webhook_url, dg.EnvVar)
        assert resources["alerts"].webhook_url.env_var_name == "ENGINE_ALERT_WEBHOOK"
        with dg.instance_for_test() as instance:
            dg.materialize([alert_stand_in], instance=instance, raise_on_error=False)
            context = dg.build_sensor_context(
                instance=instance,
                resources={"storage": resources["storage"], "alerts": resources["alerts"]},
            )
            check_failure_alerts(context)
    finally:
        server.shutdown()
    assert len(_Receiver.posts) == 1
    post = _Receiver.posts[0]
    assert post["path"] == f"/hook?token={token}"  # it went to the configured URL
    payload = json.loads(post["body"])
    assert set(payload) == {
        "kind",
        "storage_id",
        "time_utc",
        "run_id",
        "asset",
        "check",
        "partition",
        "severity",
        "blocking",
        "description",
        "figures",
    }
    assert payload["kind"] == ALERT_KIND and payload["check"] == "rows_positive"
    assert payload["figures"] == {"rows": -1}
    log = (tmp_path / "data" / "alerts.jsonl").read_text()
    for text in (post["body"], json.dumps(post["headers"]), log):
        assert token not in text and url not in text
        for name, value in os.environ.items():
            if len(value) >= 12 and name not in ("PWD", "OLDPWD", "PYTEST_CURRENT_TEST"):
                assert value not in text, f"alert carries ${name}"
        for value in secrets.values():
            assert value not in text or value == secrets["ENGINE_STORAGE_ROOT"]


def test_no_webhook_url_is_built_into_the_code():
    urls = []
    for path in sorted((REPO / "engine_assets").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.match(r"^\s*https?://", node.value):
                    urls.append(f"{path.relative_to(REPO)}: {node.value}")
    assert urls == []
