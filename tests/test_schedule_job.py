"""The nightly job's decisions (nothing pending, on battery, chat open, another sleep),
each recorded in the journal; the sleep itself is replaced by a fake."""

from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest

from pocketsleep.config import Config
from pocketsleep.errors import PocketsleepError
from pocketsleep.nightly import chat_lock, job, power
from pocketsleep.nightly.chat_lock import chat_open, chats_closed
from pocketsleep.sleep import SleepReport
from pocketsleep.sleep.job import sleep_lock


class FakeSleep:
    """Stands in for run_sleep; records what it saw of the chat lock."""

    def __init__(self, report: SleepReport | None = None, error: BaseException | None = None):
        self.report = report or SleepReport("succeeded", sleep_id=None, expert_id=7,
                                            conversations=[1, 2], seconds=12.0)
        self.error = error
        self.calls = 0
        self.chat_could_open = None

    def __call__(self, paths, config, options=None, progress=lambda *a: None, dry_run=False):
        self.calls += 1
        with chat_open(paths) as present:  # a chat starting mid-sleep
            self.chat_could_open = present
        progress("writing questions", 0, 3)
        progress("writing questions", 1, 3)
        progress("distilling", 0, 2)
        if self.error is not None:
            raise self.error
        return self.report


@pytest.fixture
def fake_sleep(monkeypatch):
    fake = FakeSleep()
    monkeypatch.setattr(job, "run_sleep", fake)
    monkeypatch.setattr(power, "on_battery", lambda: False)
    return fake


@pytest.fixture
def pending(journal):
    return journal.log_conversation([{"role": "user", "content": "My dog is Biscuit."}])


def last(journal):
    run = journal.last_nightly_run()
    return run.outcome, run.detail


def test_nothing_pending_skips_without_sleeping(paths, journal, fake_sleep):
    journal.log_conversation([{"role": "user", "content": "secret"}], private=True)
    outcome = job.run_nightly(paths, Config())
    assert (outcome.outcome, outcome.detail) == ("skipped", "nothing pending")
    assert fake_sleep.calls == 0
    run = journal.last_nightly_run()
    assert (run.trigger, run.outcome, run.pid) == ("schedule", "skipped", os.getpid())
    assert run.finished_at is not None


def test_a_night_with_something_pending_sleeps_holding_the_chat_lock(
        paths, journal, fake_sleep, pending):
    journal.db.execute("INSERT INTO sleeps (started_at, status) VALUES ('t', 'succeeded')")
    fake_sleep.report.sleep_id = 1
    outcome = job.run_nightly(paths, Config())
    assert outcome.outcome == "slept" and outcome.sleep_id == 1
    # No real expert was written, so the morning merge finds nothing to merge.
    assert outcome.detail == "expert 7 from 2 conversations, 12 s; nothing to merge"
    assert fake_sleep.calls == 1
    assert fake_sleep.chat_could_open is False  # no chat gets its share mid-sleep
    assert journal.last_nightly_run().sleep_id == 1
    log = paths.nightly_log.read_text()
    assert "phase: writing questions" in log and log.count("phase: writing questions") == 1
    assert "slept: expert 7" in log


def test_on_battery_skips_unless_the_setting_allows_it(
        paths, journal, fake_sleep, pending, monkeypatch):
    monkeypatch.setattr(power, "on_battery", lambda: True)
    assert job.run_nightly(paths, Config()).describe() == "skipped: on battery"
    assert fake_sleep.calls == 0 and last(journal) == ("skipped", "on battery")
    assert job.run_nightly(paths, Config(skip_on_battery=False)).outcome == "slept"


def test_an_open_chat_skips_the_night_after_waiting(paths, journal, fake_sleep, pending):
    with chat_open(paths) as present:
        assert present
        started = time.monotonic()
        outcome = job.run_nightly(paths, Config(), chat_wait=0.3)
        assert time.monotonic() - started >= 0.3
    assert outcome.describe() == "skipped: chat open" and fake_sleep.calls == 0
    assert "a chat is open; waiting" in paths.nightly_log.read_text()


def test_a_chat_that_closes_while_waiting_lets_the_night_run(
        paths, journal, fake_sleep, pending, monkeypatch):
    monkeypatch.setattr(chat_lock, "POLL_SECONDS", 0.05)
    closed = threading.Event()

    def chat_for_a_moment():
        with chat_open(paths):
            closed.wait(0.3)

    chat = threading.Thread(target=chat_for_a_moment)
    chat.start()
    time.sleep(0.05)
    outcome = job.run_nightly(paths, Config(), chat_wait=30)
    chat.join()
    assert outcome.outcome == "slept"


def test_another_sleep_running_is_a_skip_not_a_failure(paths, journal, pending, monkeypatch):
    # The real run_sleep: it refuses at its lock, before any model is loaded.
    monkeypatch.setattr(power, "on_battery", lambda: False)
    with sleep_lock(paths):
        outcome = job.run_nightly(paths, Config())
    assert outcome.describe() == "skipped: another sleep is running"


def test_a_rejected_night_is_recorded_with_why(paths, journal, fake_sleep, pending):
    fake_sleep.report = SleepReport("rejected", reasons=["drift too high", "probes worse"])
    outcome = job.run_nightly(paths, Config())
    assert outcome.describe() == "rejected: drift too high; probes worse"


def test_nothing_to_learn_after_all_is_a_skip(paths, journal, fake_sleep, pending):
    fake_sleep.report = SleepReport("nothing to learn")
    assert job.run_nightly(paths, Config()).describe() == "skipped: nothing pending"


def test_a_failure_is_recorded_and_its_traceback_logged(paths, journal, fake_sleep, pending):
    fake_sleep.error = RuntimeError("out of memory in distill")
    outcome = job.run_nightly(paths, Config())
    assert outcome.describe() == "failed: RuntimeError: out of memory in distill"
    assert last(journal) == ("failed", "RuntimeError: out of memory in distill")
    log = paths.nightly_log.read_text()
    assert "Traceback" in log and "out of memory in distill" in log

    fake_sleep.error = PocketsleepError("no such model: /x.gguf; check the `model` setting")
    assert job.run_nightly(paths, Config()).detail == (
        "no such model: /x.gguf; check the `model` setting")


def test_an_interrupted_run_is_recorded_and_still_stops(paths, journal, fake_sleep, pending):
    fake_sleep.error = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        job.run_nightly(paths, Config())
    assert last(journal) == ("failed", "stopped before it finished")


def test_a_catch_up_carries_out_the_run_its_starter_recorded(paths, journal, fake_sleep):
    run_id = journal.begin_nightly_run("catch-up")
    outcome = job.run_nightly(paths, Config(), "catch-up", run_id)
    run = journal.last_nightly_run()
    assert (run.id, run.trigger, run.pid, run.outcome) == (run_id, "catch-up", os.getpid(),
                                                           "skipped")
    assert outcome.detail == "nothing pending"
    assert len(journal.nightly_runs()) == 1


def test_the_log_is_private_and_rotates(paths, journal, fake_sleep, monkeypatch):
    from pocketsleep.nightly import log as nightly_log

    monkeypatch.setattr(nightly_log, "MAX_BYTES", 300)
    os.umask(0o022)  # even with a permissive umask
    try:
        for _ in range(6):
            job.run_nightly(paths, Config())
    finally:
        os.umask(0o077)
    files = sorted(paths.logs.glob("nightly.log*"))
    assert [f.name for f in files] == ["nightly.log", "nightly.log.1", "nightly.log.2",
                                       "nightly.log.3"]
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)


# -- the chat lock ---------------------------------------------------------------------


def test_chats_share_the_lock_and_the_job_waits_for_all_of_them(paths):
    with chat_open(paths) as a, chat_open(paths) as b:
        assert a and b  # two chats at once
        with chats_closed(paths, 0) as got:
            assert not got
    with chats_closed(paths, 0) as got:
        assert got


def test_a_chat_started_mid_sleep_takes_its_share_when_the_sleep_ends(paths):
    with chats_closed(paths, 0) as got:
        assert got
        chat = chat_open(paths, retry_seconds=0.02)
        assert chat.__enter__() is False
    # The sleep is over: the chat's waiting thread takes its share, so the next
    # night's job sees an open chat.
    deadline = time.monotonic() + 5
    while True:
        with chats_closed(paths, 0) as got:
            if not got:
                break
        assert time.monotonic() < deadline, "the chat never took its share"
        time.sleep(0.02)
    chat.__exit__(None, None, None)


def test_a_subprocess_of_the_chat_does_not_hold_its_share(paths):
    """The chat's "Sleep now" runs in a child process: it must not keep the lock."""
    import subprocess
    import sys

    with chat_open(paths):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with chats_closed(paths, 0) as got:
            assert got
    finally:
        child.kill()
        child.wait()


# -- power -------------------------------------------------------------------------------


def supply(root, name, **files):
    folder = root / name
    folder.mkdir(parents=True)
    for key, value in files.items():
        (folder / key).write_text(value + "\n")


@pytest.mark.parametrize("supplies, expected", [
    ({}, False),  # a desktop or a container: no power supplies listed
    ({"AC": {"type": "Mains", "online": "1"}}, False),
    ({"AC": {"type": "Mains", "online": "1"},
      "BAT0": {"type": "Battery", "status": "Charging"}}, False),
    ({"AC": {"type": "Mains", "online": "0"},
      "BAT0": {"type": "Battery", "status": "Discharging"}}, True),
    # Some laptops say "Unknown" or "Not charging" unplugged: the offline adapter tells.
    ({"ADP1": {"type": "Mains", "online": "0"},
      "BAT0": {"type": "Battery", "status": "Unknown"}}, True),
    ({"BAT0": {"type": "Battery", "status": "Discharging"}}, True),
    ({"BAT0": {"type": "Battery", "status": "Full"}}, False),
    # A wireless mouse's battery is not the machine's.
    ({"AC": {"type": "Mains", "online": "1"},
      "hidpp_battery_0": {"type": "Battery", "status": "Discharging", "scope": "Device"}},
     False),
    ({"ucsi-source-psy-USBC000:001": {"type": "USB", "online": "1"},
      "BAT1": {"type": "Battery", "status": "Discharging"}}, False),
])
def test_linux_power_supplies(tmp_path, supplies, expected):
    root = tmp_path / "power_supply"
    root.mkdir()
    for name, files in supplies.items():
        supply(root, name, **files)
    assert power.linux_on_battery(root) is expected


def test_linux_without_sysfs_is_not_on_battery(tmp_path):
    assert power.linux_on_battery(tmp_path / "missing") is False


@pytest.mark.parametrize("output, expected", [
    ("Now drawing from 'Battery Power'\n -InternalBattery-0 (id=4653155)\t83%; discharging; "
     "4:01 remaining present: true\n", True),
    ("Now drawing from 'AC Power'\n -InternalBattery-0 (id=4653155)\t100%; charged; "
     "0:00 remaining present: true\n", False),
    ("Now drawing from 'AC Power'\n", False),  # a Mac mini
    ("", False),
])
def test_pmset(output, expected):
    assert power.pmset_on_battery(output) is expected


def test_flock_is_per_open_file_so_the_tests_are_meaningful(paths):
    """(Two opens of the lock file in one process conflict, as two processes do.)"""
    a = os.open(paths.chat_lock, os.O_RDWR | os.O_CREAT)
    b = os.open(paths.chat_lock, os.O_RDWR)
    try:
        fcntl.flock(a, fcntl.LOCK_SH)
        with pytest.raises(BlockingIOError):
            fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(a)
        os.close(b)


class FakeMerge:
    def __init__(self, paths, status="merged", error=None):
        self.paths, self.status, self.error = paths, status, error
        self.chat_could_open = None

    def __call__(self, paths, config, progress=lambda *a: None, **kw):
        from pocketsleep.versions.merge import MergeReport

        with chat_open(paths) as present:
            self.chat_could_open = present
        if self.error is not None:
            raise self.error
        return MergeReport(self.status, version=3, experts=[7], checks={
            "max_logit_diff": 1e-5, "same_answers": 3, "questions": 3})


def test_the_morning_merge_follows_a_night_that_learned_inside_the_chat_lock(
        paths, journal, fake_sleep, pending, monkeypatch):
    from pocketsleep.versions import merge

    fake = FakeMerge(paths)
    monkeypatch.setattr(merge, "merge_if_needed", fake)
    outcome = job.run_nightly(paths, Config())
    assert outcome.detail.endswith("; v3") and fake.chat_could_open is False
    assert "morning merge: Merged 1 expert into v3" in paths.nightly_log.read_text()
    assert journal.last_nightly_run().detail == outcome.detail


def test_a_rejected_night_is_not_merged(paths, journal, fake_sleep, pending, monkeypatch):
    from pocketsleep.versions import merge

    monkeypatch.setattr(merge, "merge_if_needed", lambda *a, **k: pytest.fail("merged"))
    fake_sleep.report = SleepReport("rejected", reasons=["drift"])
    assert job.run_nightly(paths, Config()).outcome == "rejected"


def test_a_failed_merge_keeps_the_night(paths, journal, fake_sleep, pending, monkeypatch):
    from pocketsleep.errors import PocketsleepError
    from pocketsleep.versions import merge

    monkeypatch.setattr(merge, "merge_if_needed",
                        FakeMerge(paths, error=PocketsleepError("disk full")))
    outcome = job.run_nightly(paths, Config())
    assert outcome.outcome == "slept" and outcome.detail.endswith("; merge failed: disk full")
    assert "morning merge failed: disk full" in paths.nightly_log.read_text()
