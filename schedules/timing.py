"""When the nightly sleep is due: pure functions of the time of day, the last run and now.

Every datetime here is *naive local wall-clock time*, the way launchd, systemd
(OnCalendar) and cron read "03:00": the nightly run follows the clock on the wall,
daylight saving included. Journal timestamps (UTC) are converted with `local()`.
"""

from __future__ import annotations

import datetime as dt
import re

from ..errors import InputError

DEFAULT_AT = "03:00"
# A due time counts as missed only this long after it passed: the scheduled job may
# be starting right now, and it records its run within seconds.
MISSED_GRACE = dt.timedelta(minutes=10)

_AT = re.compile(r"(\d{1,2}):(\d{2})")


def parse_at(text: str) -> dt.time:
    """'03:00' or '3:00' (24-hour) as a time of day; anything else is an InputError."""
    m = _AT.fullmatch(text.strip())
    if m and int(m.group(1)) < 24 and int(m.group(2)) < 60:
        return dt.time(int(m.group(1)), int(m.group(2)))
    raise InputError(f"--at must be a time of day as HH:MM (24-hour), e.g. 03:00; got {text!r}")


def format_at(at: dt.time) -> str:
    return at.strftime("%H:%M")


def local(iso: str) -> dt.datetime:
    """A journal timestamp (ISO, usually UTC) as naive local time."""
    when = dt.datetime.fromisoformat(iso)
    if when.tzinfo is not None:
        when = when.astimezone().replace(tzinfo=None)
    return when


def next_run(at: dt.time, now: dt.datetime) -> dt.datetime:
    """The first due time strictly after `now`."""
    today = dt.datetime.combine(now.date(), at)
    return today if today > now else today + dt.timedelta(days=1)


def last_due(at: dt.time, now: dt.datetime) -> dt.datetime:
    """The most recent due time at or before `now`."""
    today = dt.datetime.combine(now.date(), at)
    return today if today <= now else today - dt.timedelta(days=1)


def missed_run(at: dt.time, installed_at: dt.datetime, last_run_at: dt.datetime | None,
               now: dt.datetime, grace: dt.timedelta = MISSED_GRACE) -> dt.datetime | None:
    """The due time that passed without a run, if any (the one to catch up).

    Only the most recent due time counts: one catch-up covers every missed night,
    since a sleep learns everything pending. A due time before the schedule was
    installed was never promised; a run that started at or after the due time
    (whatever came of it: slept, skipped on battery...) is that night's run.
    """
    due = last_due(at, now - grace)
    if due < installed_at:
        return None
    if last_run_at is not None and last_run_at >= due:
        return None
    return due
