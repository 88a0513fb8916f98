"""Running a pocketsleep subcommand in its own process while chat stays usable.

`Job` starts `python -m pocketsleep <args>` on the same data home, reads its output
in a thread worker and posts it back line by line (a `\\r`-rewritten progress line
counts as a line), with a percentage when the line holds one. The process gets its
own session, so a Ctrl+C meant for the terminal does not reach it; quitting the app
stops it (the app asks first).

Palette entries exist only for subcommands the CLI really has (`available()`).
"""

from __future__ import annotations

import codecs
import itertools
import os
import re
import signal
import subprocess
import sys
from typing import Callable

from textual.message import Message

from pocketsleep.config import ENV_HOME, Paths
from pocketsleep.text import printable

_ids = itertools.count(1)
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s?%")
_FRACTION = re.compile(r"\b(\d+)\s?/\s?(\d+)\b")
_LINE_END = re.compile(r"\r\n|\r|\n")
TAIL_LINES = 20


def available() -> set[str]:
    """Names of the subcommands the installed CLI has."""
    from pocketsleep.cli import cli

    return set(cli.commands)


def parse_progress(line: str) -> float | None:
    """A progress fraction (0..1) found in an output line, if any."""
    m = _PERCENT.search(line)
    if m:
        return min(float(m.group(1)) / 100.0, 1.0)
    m = _FRACTION.search(line)
    if m and 0 < int(m.group(2)) and int(m.group(1)) <= int(m.group(2)):
        return int(m.group(1)) / int(m.group(2))
    return None


class Job:
    """One subcommand run; its messages are posted to whoever `run` is given."""

    def __init__(
        self,
        title: str,
        args: list[str],
        paths: Paths | None = None,
        argv_prefix: list[str] | None = None,
        outcome_from: str | None = None,
    ):
        self.id = next(_ids)
        self.title = title
        self.args = list(args)
        self.paths = paths
        self.argv_prefix = argv_prefix or [sys.executable, "-m", "pocketsleep"]
        self.process: subprocess.Popen | None = None
        self.tail: list[str] = []
        self.returncode: int | None = None
        # The first line of the command's closing report ("Forgot conversation 3: ..."),
        # which then is told as the job's outcome.
        self.outcome_from = outcome_from
        self._stop_requested = False

    @property
    def argv(self) -> list[str]:
        return [*self.argv_prefix, *self.args]

    @property
    def running(self) -> bool:
        return self.returncode is None

    def outcome(self) -> str | None:
        """The command's closing report (from its last line starting with
        `outcome_from` to the end of its output), if it printed one."""
        if self.outcome_from is None:
            return None
        starts = [i for i, line in enumerate(self.tail) if line.startswith(self.outcome_from)]
        return "\n".join(self.tail[starts[-1]:]) if starts else None

    class Output(Message):
        def __init__(self, job_id: int, line: str, progress: float | None) -> None:
            super().__init__()
            self.job_id = job_id
            self.line = line
            self.progress = progress

    class Finished(Message):
        def __init__(self, job_id: int, returncode: int, last_line: str) -> None:
            super().__init__()
            self.job_id = job_id
            self.returncode = returncode
            self.last_line = last_line

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.paths is not None:
            env[ENV_HOME] = str(self.paths.home)
        env["PYTHONUNBUFFERED"] = "1"  # progress must arrive as it happens
        env["NO_COLOR"] = "1"
        return env

    def run(self, post: Callable[[Message], object]) -> None:
        """Thread body: start the process and relay its output until it exits."""
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,
            )
        except OSError as e:
            self.returncode = 127
            post(Job.Finished(self.id, 127, f"cannot start: {e}"))
            return
        if self._stop_requested:
            self.stop()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        fd = self.process.stdout.fileno()
        while chunk := os.read(fd, 4096):
            pending += decoder.decode(chunk)
            *lines, pending = _LINE_END.split(pending)
            for line in lines:
                self._relay(line, post)
        self._relay(pending + decoder.decode(b"", final=True), post)
        self.process.stdout.close()
        self.returncode = self.process.wait()
        post(Job.Finished(self.id, self.returncode, self.tail[-1] if self.tail else ""))

    def _relay(self, line: str, post: Callable[[Message], object]) -> None:
        line = printable(line.strip())
        if not line:
            return
        self.tail = (self.tail + [line])[-TAIL_LINES:]
        post(Job.Output(self.id, line, parse_progress(line)))

    def stop(self) -> None:
        """Ask the process and its children to stop (SIGTERM to its process group)."""
        self._stop_requested = True  # in case the process is only about to start
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            self.process.terminate()
