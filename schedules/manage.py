"""Install, remove and describe the nightly schedule, on whichever system fits.

launchd on macOS; on Linux a systemd user timer where a user manager runs, else a
crontab entry. `--using` overrides the choice. One schedule per data home: install
replaces whatever this home had (on any system), remove takes away only what
pocketsleep wrote.
"""

from __future__ import annotations

import datetime as dt
import sys
from types import ModuleType

from ..config import Paths
from ..errors import ScheduleError
from ..journal.records import now as utc_now
from . import cron, launchd, state, systemd
from .job import job_name, scheduled_job
from .state import InstalledSchedule
from .timing import format_at

SYSTEMS: dict[str, ModuleType] = {m.SYSTEM: m for m in (launchd, systemd, cron)}


def choose_system(using: str | None = None) -> ModuleType:
    """The named system if it works here, else the one this platform expects."""
    if using is not None:
        system = SYSTEMS[using]
        reason = system.usable()
        if reason:
            raise ScheduleError(reason)
        return system
    order = (launchd,) if sys.platform == "darwin" else (systemd, cron)
    reasons = []
    for system in order:
        reason = system.usable()
        if reason is None:
            return system
        reasons.append(reason)
    raise ScheduleError("no way to schedule the nightly sleep here: " + "; ".join(reasons))


def install(paths: Paths, at: dt.time, using: str | None = None) -> InstalledSchedule:
    system = choose_system(using)
    job = scheduled_job(paths)
    previous = state.load(paths)
    if previous is not None and previous.system != system.SYSTEM:
        SYSTEMS[previous.system].remove(previous.name)  # one schedule, not two
    try:
        location = system.install(job, at)
    except ScheduleError as e:
        # Nothing half-installed: unit files written but never enabled would look
        # scheduled to the user and to `status`, and never run.
        try:
            system.remove(job.name)
        except ScheduleError:
            pass
        state.forget(paths)
        raise ScheduleError(f"{e}; nothing is scheduled") from None
    schedule = InstalledSchedule(system=system.SYSTEM, at=format_at(at), name=job.name,
                                 location=location, command=list(job.argv),
                                 installed_at=utc_now())
    state.save(paths, schedule)
    return schedule


def remove(paths: Paths) -> list[str]:
    """Take away this home's schedule wherever it is; return the systems it was on."""
    name = job_name(paths)
    removed = []
    for system in SYSTEMS.values():
        try:
            if system.remove(name):
                removed.append(system.SYSTEM)
        except ScheduleError:
            # A system that cannot even be read here (crontab missing, say) holds
            # nothing of ours, unless the record says so.
            recorded = state.load(paths)
            if recorded is not None and recorded.system == system.SYSTEM:
                raise
    state.forget(paths)
    return removed


def is_in_place(schedule: InstalledSchedule) -> bool:
    """Whether the system still has what install wrote (a user may delete it by hand)."""
    try:
        return SYSTEMS[schedule.system].is_installed(schedule.name)
    except ScheduleError:
        return False
