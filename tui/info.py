"""What the status bar says: engine, personal model, last and next sleep, backlog.

Each fact comes from one small function so that later features (model versions,
scheduling) fill in their part here and nowhere else.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pocketsleep.config import Paths
from pocketsleep.journal import Journal, Sleep


@dataclass(frozen=True)
class StatusInfo:
    engine: str  # "fake · default", "loading model…", "no model"
    personal_model: str  # "base" until the first morning merge
    last_sleep: str  # "never", "2026-01-05 03:00 succeeded"
    waiting: int  # conversations waiting to be consolidated
    next_sleep: str  # "not scheduled", "2026-01-06 03:00"


def format_when(iso: str) -> str:
    """A journal timestamp (UTC ISO) as local 'YYYY-MM-DD HH:MM'."""
    try:
        when = dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if when.tzinfo is not None:
        when = when.astimezone()
    return when.strftime("%Y-%m-%d %H:%M")


def describe_sleep(sleep: Sleep | None) -> str:
    if sleep is None:
        return "never"
    return f"{format_when(sleep.started_at)} {sleep.status}"


def personal_model_version(journal: Journal, paths: Paths | None) -> str:
    """The personal model in use: "base" until a morning merge has made version 1,
    then "v3"; "base + 2 experts" while the experts are not all merged (the engines
    then wear them on the base, see pocketsleep.versions.layout)."""
    current = journal.current_version()
    active = sorted(r["id"] for r in journal.active_experts())
    if current is not None and sorted(current.expert_ids) == active:
        return current.label
    if active:
        return f"base + {len(active)} expert{'s' * (len(active) != 1)}"
    return "base"


def next_scheduled_sleep(paths: Paths | None) -> dt.datetime | None:
    """When the next scheduled sleep runs, or None when none is scheduled.

    The one place the chat app asks. Read from the schedule's record in the data
    home (no crontab or systemctl call on the chat's clock tick); a damaged record
    shows as "not scheduled" here, and `pocketsleep schedule status` explains it.
    """
    if paths is None:
        return None
    from pocketsleep.errors import PocketsleepError
    from pocketsleep.schedules import state
    from pocketsleep.schedules.timing import next_run

    try:
        schedule = state.load(paths)
    except PocketsleepError:
        return None
    if schedule is None:
        return None
    return next_run(schedule.time_of_day, dt.datetime.now())


def gather_status(journal: Journal, paths: Paths | None, engine: str,
                  switch_pending: bool = False) -> StatusInfo:
    """`switch_pending`: the personal model changed since the engine was loaded; the
    chat loads the new one before its next answer."""
    nxt = next_scheduled_sleep(paths)
    personal = personal_model_version(journal, paths)
    return StatusInfo(
        engine=engine,
        personal_model=f"{personal} (from the next answer)" if switch_pending else personal,
        last_sleep=describe_sleep(journal.last_sleep()),
        waiting=journal.counts()["waiting"],
        next_sleep="not scheduled" if nxt is None else nxt.strftime("%Y-%m-%d %H:%M"),
    )
