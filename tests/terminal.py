"""Run a command on a pseudo-terminal and render what a person would see on the screen
(pyte, a VT100 emulator: cursor moves and redraws applied, colours dropped)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from dataclasses import dataclass

import pyte

COLUMNS = 160
ROWS = 400  # tall enough that nothing of a run scrolls away


@dataclass
class TerminalRun:
    returncode: int
    screen: list[str]  # the screen's lines after the command exited, trailing blanks cut
    raw: bytes  # everything the command wrote to the terminal

    @property
    def text(self) -> str:
        return "\n".join(self.screen)

    def line_starting(self, prefix: str) -> str:
        hits = [line for line in self.screen if line.startswith(prefix)]
        assert hits, f"no line starts with {prefix!r}:\n{self.text}"
        return hits[-1]


def run_on_terminal(cmd: list[str], env: dict[str, str], cwd: str | None = None,
                    timeout: float = 600) -> TerminalRun:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                            env={**env, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS),
                                 "LINES": str(ROWS)},
                            start_new_session=True)
    os.close(slave)
    raw = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 1 << 16)
                except OSError:  # EIO: the child side closed
                    break
                if not chunk:
                    break
                raw += chunk
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            raise AssertionError(f"{cmd} did not finish in {timeout} s")
        proc.wait(timeout=30)
    finally:
        os.close(master)
    screen = pyte.Screen(COLUMNS, ROWS)
    stream = pyte.ByteStream(screen)
    stream.feed(bytes(raw))
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return TerminalRun(proc.returncode, lines, bytes(raw))
