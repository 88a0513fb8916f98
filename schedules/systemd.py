"""systemd: a user service and timer in ~/.config/systemd/user.

`Persistent=true` makes systemd run a night it missed (the machine was off) as soon
as the timer is active again, so no catch-up of our own is needed here. Used only
where a user manager really runs (its private socket exists): containers and many
servers have systemctl but no user session, and a timer there would never fire.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import shutil
from pathlib import Path

from ..config import systemd_user_dir
from ..errors import ScheduleError
from ..files import write_file_atomic
from . import tools
from .job import ScheduledJob

SYSTEM = "systemd"
CATCHES_UP_ITSELF = True
UNIT_MODE = 0o644


def runtime_dir() -> Path:
    return Path(os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}")


def usable() -> str | None:
    """None when a user systemd manager runs here, else why not."""
    if shutil.which("systemctl") is None:
        return "this machine has no systemd (`systemctl` not found); use --using cron"
    if not (runtime_dir() / "systemd" / "private").exists():
        return ("no systemd user session runs here (no user manager socket in "
                f"{runtime_dir()}); use --using cron")
    return None


def lingers() -> bool:
    """Whether the user's timers run while they are logged out (loginctl enable-linger)."""
    return Path("/var/lib/systemd/linger", getpass.getuser()).exists()


def _escape(value: str) -> str:
    """A value inside a double-quoted unit-file word: specifiers (%), variable
    expansion ($), quotes and backslashes all taken literally."""
    if "\n" in value:
        raise ScheduleError(f"cannot put a path with a line break in a systemd unit: {value!r}")
    return (value.replace("\\", "\\\\").replace('"', '\\"')
            .replace("%", "%%").replace("$", "$$"))


def _raw(value: str) -> str:
    """A path taken to the end of the line (WorkingDirectory=, after `append:`)."""
    if "\n" in value:
        raise ScheduleError(f"cannot put a path with a line break in a systemd unit: {value!r}")
    return value.replace("%", "%%")


def service_text(job: ScheduledJob) -> str:
    lines = [
        "[Unit]",
        "Description=pocketsleep: the nightly sleep (learn the day's conversations)",
        "",
        "[Service]",
        "Type=oneshot",
        "ExecStart=" + " ".join(f'"{_escape(a)}"' for a in job.argv),
        f"WorkingDirectory={_raw(str(job.workdir))}",
        *(f'Environment="{_escape(k)}={_escape(v)}"' for k, v in job.env.items()),
        f"StandardOutput=append:{_raw(str(job.output))}",
        f"StandardError=append:{_raw(str(job.output))}",
        # A night's training must not make the user's own work sluggish.
        "Nice=10",
        "IOSchedulingClass=idle",
        "",
    ]
    return "\n".join(lines)


def timer_text(job: ScheduledJob, at: dt.time) -> str:
    return "\n".join([
        "[Unit]",
        "Description=pocketsleep: run the nightly sleep every day",
        "",
        "[Timer]",
        f"OnCalendar=*-*-* {at.strftime('%H:%M')}:00",
        "Persistent=true",
        f"Unit={job.name}.service",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ])


def unit_files(name: str) -> tuple[Path, Path]:
    folder = systemd_user_dir()
    return folder / f"{name}.service", folder / f"{name}.timer"


def install(job: ScheduledJob, at: dt.time) -> str:
    reason = usable()
    if reason:
        raise ScheduleError(reason)
    service, timer = unit_files(job.name)
    service.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(service, service_text(job).encode(), UNIT_MODE)
    write_file_atomic(timer, timer_text(job, at).encode(), UNIT_MODE)
    systemctl = ["systemctl", "--user"]
    tools.check([*systemctl, "daemon-reload"])
    tools.check([*systemctl, "enable", timer.name])
    # restart, not start: a timer already active must pick up a new --at.
    tools.check([*systemctl, "restart", timer.name])
    return f"{service} and {timer}"


def is_installed(name: str) -> bool:
    return unit_files(name)[1].exists()


def remove(name: str) -> bool:
    service, timer = unit_files(name)
    if not (service.exists() or timer.exists()):
        return False
    if usable() is None:
        # Failures here (a timer that was never loaded) must not keep the files.
        tools.run(["systemctl", "--user", "disable", "--now", timer.name])
    timer.unlink(missing_ok=True)
    service.unlink(missing_ok=True)
    if usable() is None:
        tools.run(["systemctl", "--user", "daemon-reload"])
    return True
