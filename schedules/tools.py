"""Running the system's scheduling tools (crontab, launchctl, systemctl).

One function so that every failure reads the same way: one line naming the tool
and what it said. Tests replace `run` where the real tool cannot work here.
"""

from __future__ import annotations

import subprocess

from ..errors import ScheduleError

TIMEOUT_S = 30


def run(argv: list[str], *, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run a tool and return its result, whatever its exit status; a missing tool
    is a ScheduleError."""
    try:
        return subprocess.run(argv, input=input, capture_output=True, timeout=TIMEOUT_S)
    except FileNotFoundError:
        raise ScheduleError(f"`{argv[0]}` is not installed on this machine") from None
    except subprocess.TimeoutExpired:
        raise ScheduleError(f"`{' '.join(argv)}` did not answer in {TIMEOUT_S} s") from None


def check(argv: list[str], *, input: bytes | None = None,
          hint: str = "") -> subprocess.CompletedProcess:
    """Run a tool that must succeed."""
    done = run(argv, input=input)
    if done.returncode != 0:
        tail = f"; {hint}" if hint else ""
        raise ScheduleError(f"`{' '.join(argv)}` failed: {said(done)}{tail}")
    return done


def said(done: subprocess.CompletedProcess) -> str:
    """A tool's complaint as one line."""
    text = (done.stderr or done.stdout or b"").decode("utf-8", "replace").strip()
    return " ".join(text.split()) or f"exit status {done.returncode}"
