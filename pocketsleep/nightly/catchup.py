"""Catching up a missed night at the next start.

cron (and launchd, for a Mac that was off) simply skips a night the machine was
not running. So when pocketsleep starts (the chat, and a few light commands), it
checks: is a schedule installed, did its most recent due time pass, and has no
run been recorded since? Then the nightly job starts now, detached (its own
session, output to the log), and the user is told in one line. systemd timers
with Persistent=true catch up by themselves and are left to it.

The run is recorded here, before the process starts, so two starts in quick
succession never launch two catch-ups.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess

from ..config import PRIVATE_FILE_MODE, Paths
from ..journal import Journal
from ..schedules import manage, state
from ..schedules.job import ScheduledJob, scheduled_job
from ..schedules.timing import local, missed_run
from .job import NOTHING_PENDING


def missed_due(paths: Paths, journal: Journal, now: dt.datetime | None = None
               ) -> dt.datetime | None:
    """The due time of a night that did not run and needs catching up, if any."""
    schedule = state.load(paths)
    if schedule is None or manage.SYSTEMS[schedule.system].CATCHES_UP_ITSELF:
        return None
    last = journal.last_nightly_run()
    return missed_run(schedule.time_of_day, schedule.installed_local,
                      local(last.started_at) if last else None,
                      now or dt.datetime.now())


def spawn_detached(job: ScheduledJob) -> subprocess.Popen:
    """Start the job in its own session (a closing terminal does not stop it), its
    output appended to the log folder, nothing inherited but the environment."""
    out = os.open(job.output, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        return subprocess.Popen(
            list(job.argv), cwd=job.workdir, env={**os.environ, **job.env},
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True)
    finally:
        os.close(out)


def catch_up(paths: Paths, journal: Journal, in_chat: bool = False,
             now: dt.datetime | None = None) -> str | None:
    """Start the missed night's job if there is one; return the line to show."""
    due = missed_due(paths, journal, now)
    if due is None:
        return None
    if journal.counts()["waiting"] == 0:
        # Nothing to learn: record the night as done rather than start a process.
        run_id = journal.begin_nightly_run("catch-up", os.getpid())
        journal.end_nightly_run(run_id, "skipped", NOTHING_PENDING)
        return None
    run_id = journal.begin_nightly_run("catch-up")
    job = scheduled_job(paths, "--catch-up", "--run-id", str(run_id))
    try:
        spawn_detached(job)
    except OSError as e:
        journal.end_nightly_run(run_id, "failed", f"could not start the catch-up: {e}")
        return (f"The nightly sleep due {due:%Y-%m-%d %H:%M} did not run, and catching up "
                f"failed: {e}")
    when = "once you close the chat" if in_chat else "now, in the background"
    return (f"The nightly sleep due {due:%Y-%m-%d %H:%M} did not run; it catches up {when} "
            f"(log: {paths.nightly_log}).")
