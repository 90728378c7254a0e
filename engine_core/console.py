"""What a person sees in the terminal while the engine runs, and the summary after it.

:class:`TerminalProgress` is a progress callback (``ProgressCallback``): on a terminal it
draws one live bar per state with the state's rate and ETA (rich); elsewhere (CI logs, a pipe)
it prints plain ``[s4] done/total … eta`` lines, at most one per state every ``every_s``
seconds plus each state's last. :func:`print_summary` prints the closing table. Both write to
stderr so stdout keeps what a program reads (the CLI's JSON summary line).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine_core.pipeline.types import ProgressUpdate

STATE_LABELS = {
    "world": "world validation",
    "s1": "s1 time grid",
    "s2": "s2 latent field",
    "s3": "s3 bucket counts",
    "s4": "s4 arrival events",
    "s5": "s5 validation",
}


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _rate(value: float, unit: str) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.1f}{suffix} {unit}/s"
    return f"{value:.0f} {unit}/s"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-:--"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


class TerminalProgress:
    """A progress callback drawing bars on a terminal, plain lines elsewhere."""

    def __init__(self, states: Sequence[str], stream: IO[str] | None = None,
                 tty: bool | None = None, every_s: float = 5.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = is_terminal(self.stream) if tty is None else tty
        self.every_s = every_s
        self.states = list(states)
        self._lock = threading.Lock()
        self._last_line: dict[str, float] = {}
        self._units: dict[str, str] = {}
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        if self.tty:
            self._start_bars()

    # ------------------------------------------------------------------ terminal
    def _start_bars(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        console = Console(file=self.stream, force_terminal=True)
        self._progress = Progress(
            TextColumn("{task.description:<18}"),
            BarColumn(bar_width=32),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[count]}"),
            TextColumn("[cyan]{task.fields[rate]}"),
            TextColumn("elapsed {task.fields[elapsed]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=console,
            refresh_per_second=4,
            transient=False,
        )
        for state in self.states:
            self._tasks[state] = self._progress.add_task(
                STATE_LABELS.get(state, state), total=None, count="waiting", rate="",
                elapsed="-:--", eta="-:--", start=False)
        self._progress.start()

    def _bar(self, u: ProgressUpdate) -> None:
        if u.state not in self._tasks:
            self._tasks[u.state] = self._progress.add_task(
                STATE_LABELS.get(u.state, u.state), total=None, count="", rate="",
                elapsed="", eta="")
        task_id = self._tasks[u.state]
        self._progress.start_task(task_id)
        unit = self._units.setdefault(u.state, u.unit)
        if u.unit != unit:
            # a completion notice in other units (a Dagster step ending): fill the bar
            task = next(t for t in self._progress.tasks if t.id == task_id)
            total = task.total or 1
            self._progress.update(task_id, total=total, completed=total, eta="0:00")
            return
        total = max(u.total, 1)
        final = u.done >= u.total
        self._progress.update(
            task_id, total=total, completed=total if final else min(u.done, total),
            count=f"{u.done:,}/{u.total:,} {unit}", rate=_rate(u.rate, unit),
            elapsed=_duration(u.elapsed_s), eta="0:00" if final else _duration(u.eta_s))

    # ------------------------------------------------------------------ plain lines
    def _line(self, u: ProgressUpdate) -> None:
        now = time.monotonic()
        final = u.total > 0 and u.done >= u.total
        last = self._last_line.get(u.state)
        if not final and last is not None and now - last < self.every_s:
            return
        if final and last == float("inf"):
            return  # completion already said
        self._last_line[u.state] = float("inf") if final else now
        print(u.line(), file=self.stream, flush=True)

    def __call__(self, update: ProgressUpdate) -> None:
        with self._lock:
            if self._progress is not None:
                self._bar(update)
            else:
                self._line(update)

    def close(self) -> None:
        """Stop the live display (the bars stay on screen as they last were)."""
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def summary_rows(*, events: int, wall_s: float, checks_passed: int, checks_total: int,
                 output: str, passed: bool, extra: dict[str, str] | None = None
                 ) -> list[tuple[str, str]]:
    rate = events / wall_s if wall_s > 0 else 0.0
    rows = [
        ("result", "PASSED" if passed else "FAILED"),
        ("events", f"{events:,}"),
        ("wall", f"{wall_s:.1f} s"),
        ("throughput", _rate(rate, "events")),
        ("checks passed", f"{checks_passed}/{checks_total}"),
        ("output", output),
    ]
    rows += list((extra or {}).items())
    return rows


def print_summary(rows: list[tuple[str, str]], stream: IO[str] | None = None,
                  tty: bool | None = None, title: str = "arrival engine") -> None:
    """The closing table: a rich table on a terminal, aligned ``key: value`` lines else."""
    stream = stream if stream is not None else sys.stderr
    if is_terminal(stream) if tty is None else tty:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in rows:
            style = {"PASSED": "green", "FAILED": "bold red"}.get(value)
            table.add_row(key, f"[{style}]{value}[/]" if style else value)
        Console(file=stream, force_terminal=True).print(table)
        return
    width = max(len(k) for k, _ in rows)
    print(f"{title}:", file=stream)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}", file=stream)
    stream.flush()
