"""When the nightly sleep is due, and catching up a night that did not run."""

from __future__ import annotations

import datetime as dt

import pytest

from pocketsleep.errors import InputError
from pocketsleep.nightly import catchup
from pocketsleep.schedules import state
from pocketsleep.schedules.state import InstalledSchedule
from pocketsleep.schedules.timing import last_due, missed_run, next_run, parse_at

AT = dt.time(3, 0)
D = dt.datetime


@pytest.mark.parametrize("text, expected", [
    ("03:00", dt.time(3, 0)), ("3:00", dt.time(3, 0)), ("23:59", dt.time(23, 59)),
    (" 00:05 ", dt.time(0, 5)),
])
def test_parse_at_accepts_24_hour_times(text, expected):
    assert parse_at(text) == expected


@pytest.mark.parametrize("text", ["24:00", "3", "03:60", "3pm", "03:00:00", "", "-1:00"])
def test_parse_at_refuses_anything_else_in_one_line(text):
    with pytest.raises(InputError, match=r"--at must be a time of day as HH:MM"):
        parse_at(text)


def test_next_run_is_today_until_the_time_passes_then_tomorrow():
    assert next_run(AT, D(2026, 1, 5, 2, 59)) == D(2026, 1, 5, 3, 0)
    assert next_run(AT, D(2026, 1, 5, 3, 0)) == D(2026, 1, 6, 3, 0)  # strictly after
    assert next_run(AT, D(2026, 1, 5, 23, 0)) == D(2026, 1, 6, 3, 0)
    assert next_run(AT, D(2026, 12, 31, 4, 0)) == D(2027, 1, 1, 3, 0)


def test_last_due_is_the_most_recent_time_at_or_before_now():
    assert last_due(AT, D(2026, 1, 5, 3, 0)) == D(2026, 1, 5, 3, 0)
    assert last_due(AT, D(2026, 1, 5, 2, 59)) == D(2026, 1, 4, 3, 0)
    assert last_due(AT, D(2026, 3, 1, 1, 0)) == D(2026, 2, 28, 3, 0)


INSTALLED = D(2026, 1, 1, 12, 0)


@pytest.mark.parametrize("last_run, now, expected", [
    # The machine was off at 03:00 on the 5th: caught up at the next start.
    (D(2026, 1, 4, 3, 0, 5), D(2026, 1, 5, 9, 0), D(2026, 1, 5, 3, 0)),
    # It ran: nothing to catch up, whatever the outcome was.
    (D(2026, 1, 5, 3, 0, 1), D(2026, 1, 5, 9, 0), None),
    # Never ran at all since installing: the last due time is missed.
    (None, D(2026, 1, 5, 9, 0), D(2026, 1, 5, 3, 0)),
    # Several nights missed: one catch-up, for the most recent (a sleep learns all).
    (D(2026, 1, 1, 3, 0), D(2026, 1, 9, 9, 0), D(2026, 1, 9, 3, 0)),
    # Just after the due time the scheduled job may still be starting: not yet missed,
    # and yesterday's run counts for yesterday.
    (D(2026, 1, 4, 3, 0, 2), D(2026, 1, 5, 3, 5), None),
    (D(2026, 1, 4, 3, 0, 2), D(2026, 1, 5, 3, 11), D(2026, 1, 5, 3, 0)),
    # A run by hand before the due time does not stand for that night.
    (D(2026, 1, 5, 2, 0), D(2026, 1, 5, 9, 0), D(2026, 1, 5, 3, 0)),
])
def test_missed_run(last_run, now, expected):
    assert missed_run(AT, INSTALLED, last_run, now) == expected


def test_a_due_time_before_the_schedule_existed_was_never_missed():
    installed = D(2026, 1, 5, 10, 0)  # installed after that day's 03:00
    assert missed_run(AT, installed, None, D(2026, 1, 5, 23, 0)) is None
    assert missed_run(AT, installed, None, D(2026, 1, 6, 9, 0)) == D(2026, 1, 6, 3, 0)


# -- catching up at the next start -------------------------------------------------


def utc(local_time: D) -> str:
    return local_time.astimezone(dt.timezone.utc).isoformat()


def install_record(paths, system="cron", at="03:00", installed=D(2026, 1, 1, 12, 0)):
    state.save(paths, InstalledSchedule(system=system, at=at, name="pocketsleep-nightly-t",
                                        location="test", command=["/bin/true"],
                                        installed_at=utc(installed)))


@pytest.fixture
def spawned(monkeypatch):
    jobs = []
    monkeypatch.setattr(catchup, "spawn_detached", jobs.append)
    return jobs


NOW = D(2026, 1, 5, 9, 0)


def test_no_schedule_no_catch_up(paths, journal, spawned):
    journal.log_conversation([{"role": "user", "content": "hi"}])
    assert catchup.catch_up(paths, journal, now=NOW) is None
    assert spawned == [] and journal.last_nightly_run() is None


def test_a_missed_night_starts_the_job_detached_and_records_the_run_first(
        paths, journal, spawned):
    install_record(paths)
    journal.log_conversation([{"role": "user", "content": "My dog is Biscuit."}])
    notice = catchup.catch_up(paths, journal, in_chat=True, now=NOW)
    assert notice.startswith("The nightly sleep due 2026-01-05 03:00 did not run")
    assert "once you close the chat" in notice and str(paths.nightly_log) in notice
    run = journal.last_nightly_run()
    assert (run.trigger, run.outcome, run.pid) == ("catch-up", "running", None)
    [job] = spawned
    assert job.argv[-4:] == ("nightly", "--catch-up", "--run-id", str(run.id))
    assert job.output == paths.nightly_output and job.workdir == paths.home
    # Recorded before the process started: a second start does not launch another.
    assert catchup.catch_up(paths, journal, now=NOW + dt.timedelta(seconds=1)) is None
    assert len(spawned) == 1


def test_a_missed_night_with_nothing_pending_is_recorded_without_a_process(
        paths, journal, spawned):
    install_record(paths)
    assert catchup.catch_up(paths, journal, now=NOW) is None
    run = journal.last_nightly_run()
    assert (run.trigger, run.outcome, run.detail) == ("catch-up", "skipped", "nothing pending")
    assert spawned == []


def test_systemd_catches_up_by_itself(paths, journal, spawned):
    install_record(paths, system="systemd")
    journal.log_conversation([{"role": "user", "content": "hi"}])
    assert catchup.missed_due(paths, journal, NOW) is None
    assert catchup.catch_up(paths, journal, now=NOW) is None and spawned == []


def test_a_run_since_the_due_time_means_nothing_is_missed(paths, journal, spawned):
    install_record(paths)
    journal.log_conversation([{"role": "user", "content": "hi"}])
    assert catchup.missed_due(paths, journal, dt.datetime.now() + dt.timedelta(days=1))
    journal.begin_nightly_run("schedule", 1)  # started now, after every due time so far
    assert catchup.missed_due(paths, journal, dt.datetime.now()) is None


def test_a_failed_spawn_is_recorded_and_told(paths, journal, monkeypatch):
    install_record(paths)
    journal.log_conversation([{"role": "user", "content": "hi"}])

    def fail(job):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(catchup, "spawn_detached", fail)
    notice = catchup.catch_up(paths, journal, now=NOW)
    assert "catching up failed" in notice
    run = journal.last_nightly_run()
    assert run.outcome == "failed" and "could not start the catch-up" in run.detail
