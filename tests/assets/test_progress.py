from types import SimpleNamespace

from engine_assets.progress import TAG_ETA, TAG_PROGRESS, TAG_RATE, RunProgressReporter
from engine_core.pipeline.types import ProgressUpdate


class FakeInstance:
    def __init__(self):
        self.tags: list[dict] = []

    def add_run_tags(self, run_id, tags):
        assert run_id == "run-1"
        self.tags.append(dict(tags))


class FakeLog:
    def __init__(self):
        self.lines: list[str] = []

    def info(self, msg):
        self.lines.append(msg)

    debug = info


def _context():
    return SimpleNamespace(
        instance=FakeInstance(), run=SimpleNamespace(run_id="run-1"), log=FakeLog()
    )


def test_updates_are_throttled_but_the_last_one_always_lands():
    now = [0.0]
    ctx = _context()
    rep = RunProgressReporter(ctx, min_interval_s=5.0, clock=lambda: now[0])
    for i in range(10):  # one callback per second for 10 s
        now[0] = float(i)
        rep(ProgressUpdate("s4", i, 10, "events", now[0], 100.0, 10.0 - i))
    rep(ProgressUpdate("s4", 10, 10, "events", 10.0, 100.0, 0.0))
    assert rep.updates_seen == 11
    assert rep.updates_emitted == 3  # t=0, t=5, final
    assert ctx.instance.tags[-1][TAG_PROGRESS] == "s4 100.0%"
    assert ctx.instance.tags[1][TAG_ETA] == "5" and ctx.instance.tags[1][TAG_RATE] == "100"
    assert "[s4] 5/10 events (50.0%)" in ctx.log.lines[1]


def test_a_failing_tag_store_does_not_fail_the_state():
    ctx = _context()

    def broken(run_id, tags):
        raise RuntimeError("storage down")

    ctx.instance.add_run_tags = broken
    RunProgressReporter(ctx)(ProgressUpdate("s3", 1, 2, "series", 1.0, 1.0, 1.0))
    assert ctx.log.lines


def test_completion_is_reported_once():
    ctx = _context()
    rep = RunProgressReporter(ctx, min_interval_s=0.0)
    for _ in range(2):
        rep(ProgressUpdate("s1", 1, 1, "partitions", 0.1, 10.0, 0.0))
    assert len(ctx.log.lines) == 1
