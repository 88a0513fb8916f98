"""launchd (macOS): a user agent in ~/Library/LaunchAgents.

`StartCalendarInterval` runs the job at the time of day; launchd runs an interval
missed while the Mac slept once it wakes, but not one missed while it was off, so
the nightly job is caught up at the next pocketsleep start too. The plist is
written with plistlib (correct escaping of any path) and loaded with
`launchctl bootstrap` into the user's GUI domain.
"""

from __future__ import annotations

import datetime as dt
import os
import plistlib
import shutil
import sys
from pathlib import Path

from ..config import launch_agents_dir
from ..errors import ScheduleError
from ..files import write_file_atomic
from . import tools
from .job import ScheduledJob

SYSTEM = "launchd"
CATCHES_UP_ITSELF = False
PLIST_MODE = 0o644


def usable() -> str | None:
    if sys.platform != "darwin":
        return "launchd exists only on macOS; use --using systemd or --using cron"
    if shutil.which("launchctl") is None:
        return "`launchctl` not found; use --using cron"
    return None


def plist_path(name: str) -> Path:
    return launch_agents_dir() / f"{name}.plist"


def plist_bytes(job: ScheduledJob, at: dt.time) -> bytes:
    agent = {
        "Label": job.name,
        "ProgramArguments": list(job.argv),
        "WorkingDirectory": str(job.workdir),
        "StartCalendarInterval": {"Hour": at.hour, "Minute": at.minute},
        "StandardOutPath": str(job.output),
        "StandardErrorPath": str(job.output),
        # A night's training must not make the user's own work sluggish.
        "ProcessType": "Background",
        "LowPriorityIO": True,
        "Nice": 10,
    }
    if job.env:
        agent["EnvironmentVariables"] = dict(job.env)
    return plistlib.dumps(agent, fmt=plistlib.FMT_XML)


def _domain() -> str:
    return f"gui/{os.getuid()}"


def install(job: ScheduledJob, at: dt.time) -> str:
    reason = usable()
    if reason:
        raise ScheduleError(reason)
    path = plist_path(job.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, plist_bytes(job, at), PLIST_MODE)
    # A loaded agent keeps its old schedule until it is unloaded; it may not be
    # loaded at all (first install), so this one may fail.
    tools.run(["launchctl", "bootout", f"{_domain()}/{job.name}"])
    tools.check(["launchctl", "bootstrap", _domain(), str(path)],
                hint=f"the agent file is at {path}")
    return str(path)


def is_installed(name: str) -> bool:
    return plist_path(name).exists()


def remove(name: str) -> bool:
    path = plist_path(name)
    if not path.exists():
        return False
    if usable() is None:
        tools.run(["launchctl", "bootout", f"{_domain()}/{name}"])
    path.unlink()
    return True
