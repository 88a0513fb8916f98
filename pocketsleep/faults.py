"""Scripted faults, for the crash-safety tests: stop the process at a named point.

    checkpoint("sleep.distilled")

does nothing unless the environment names that point:

    POCKETSLEEP_FAULT=sleep.distilled        SIGKILL there (no cleanup runs: no
                                             finally, no atexit, no flush)
    POCKETSLEEP_FAULT=gguf.tensor@3          SIGKILL the 3rd time the point is reached
    POCKETSLEEP_FAULT=sleep.locked:stop      SIGSTOP there (a test resumes it with
                                             SIGCONT): a process frozen mid-work, to
                                             run something beside it deterministically

It is a test hook, not a setting: it is read from the environment only, never from
config.toml, and no command's help mentions it. Unset, a checkpoint costs one
dictionary lookup. tests/test_reliability_crash.py lists every point and kills a real
`pocketsleep` process at each.
"""

from __future__ import annotations

import os
import signal

ENV = "POCKETSLEEP_FAULT"

_hits: dict[str, int] = {}


def checkpoint(name: str) -> None:
    """Kill (or stop) this process here if POCKETSLEEP_FAULT names `name`."""
    wanted = os.environ.get(ENV)
    if not wanted or not wanted.startswith(name):
        return
    point, _, action = wanted.partition(":")
    point, _, nth = point.partition("@")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] != int(nth or 1):
        return
    os.kill(os.getpid(), signal.SIGSTOP if action == "stop" else signal.SIGKILL)
