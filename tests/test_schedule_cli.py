"""`pocketsleep schedule install|status|remove`, `pocketsleep nightly`, and the
catch-up of a missed night when pocketsleep starts."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from schedule_support import crontab_bytes, real_crontab, set_crontab  # noqa: F401

from pocketsleep.cli import main
from pocketsleep.journal import Journal
from pocketsleep.nightly import job, power
from pocketsleep.schedules import state
from pocketsleep.schedules.state import InstalledSchedule
from pocketsleep.sleep import SleepReport
from pocketsleep.tui import info


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_bad_at_is_one_line_and_installs_nothing(capsys, paths):
    code, out, err = run(capsys, "schedule", "install", "--at", "3am")
    assert code != 0 and out == ""
    assert err == ("pocketsleep: error: --at must be a time of day as HH:MM (24-hour), "
                   "e.g. 03:00; got '3am'\n")
    assert state.load(paths) is None


def test_a_system_that_cannot_work_here_is_one_line(capsys, paths, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent")
    code, _, err = run(capsys, "schedule", "install", "--using", "systemd")
    assert code != 0 and err.count("\n") == 1
    assert err.startswith("pocketsleep: error: ") and "use --using cron" in err
    code, _, err = run(capsys, "schedule", "install", "--using", "at")
    assert code != 0 and "Invalid value for '--using'" in err


def test_status_with_no_schedule(capsys, paths):
    code, out, _ = run(capsys, "schedule", "status")
    assert code == 0
    assert out.splitlines()[0] == ("No nightly sleep is scheduled; `pocketsleep schedule "
                                   "install` sets one up.")
    assert "last run   never" in out


def test_install_status_remove_with_cron(capsys, paths, real_crontab):
    set_crontab(b"0 5 * * * mine\n")
    code, out, _ = run(capsys, "schedule", "install", "--at", "23:30", "--using", "cron")
    assert code == 0
    assert out.startswith("The nightly sleep runs every day at 23:30 (cron): your crontab")
    assert "Next run " in out and str(paths.nightly_log) in out

    code, out, _ = run(capsys, "schedule", "status")
    rows = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    assert rows["schedule"].startswith("cron, every day at 23:30 (installed ")
    assert rows["installed"].startswith("your crontab, in the block marked 'pocketsleep-")
    assert rows["command"].endswith(" nightly")
    now = dt.datetime.now()
    expected = dt.datetime.combine(now.date(), dt.time(23, 30))
    if expected <= now:
        expected += dt.timedelta(days=1)
    assert rows["next"] == f"run   {expected:%Y-%m-%d %H:%M}"
    assert rows["last"] == "run   never"

    # The status bar of the chat shows the same next run.
    assert info.next_scheduled_sleep(paths) == expected

    # Removed by hand: status says so.
    set_crontab(b"0 5 * * * mine\n")
    _, out, _ = run(capsys, "schedule", "status")
    assert "MISSING (removed outside pocketsleep?)" in out

    run(capsys, "schedule", "install", "--using", "cron")
    code, out, _ = run(capsys, "schedule", "remove")
    assert (code, out) == (0, "Removed the nightly schedule (cron).\n")
    assert crontab_bytes() == b"0 5 * * * mine\n"
    assert info.next_scheduled_sleep(paths) is None
    _, out, _ = run(capsys, "schedule", "remove")
    assert out == "No nightly schedule was installed.\n"


def test_status_json_and_the_last_run(capsys, paths, journal):
    run_id = journal.begin_nightly_run("schedule", 999_999_999)  # no such process
    code, out, _ = run(capsys, "schedule", "status", "--json")
    data = json.loads(out)
    assert data["schedule"] is None
    assert data["last_run"]["id"] == run_id and data["last_run"]["alive"] is False
    _, out, _ = run(capsys, "schedule", "status")
    assert "stopped before it finished" in out
    journal.end_nightly_run(run_id, "skipped", "on battery")
    _, out, _ = run(capsys, "schedule", "status")
    assert "(schedule) skipped: on battery" in out


def test_the_nightly_command_says_what_it_did(capsys, paths, journal, monkeypatch):
    monkeypatch.setattr(power, "on_battery", lambda: False)
    code, out, _ = run(capsys, "nightly")
    assert (code, out) == (0, "Nightly run: skipped: nothing pending\n")
    journal.log_conversation([{"role": "user", "content": "I live in Lisbon."}])
    monkeypatch.setattr(job, "run_sleep", lambda *a, **k: SleepReport("rejected",
                                                                       reasons=["drift"]))
    code, out, _ = run(capsys, "nightly", "--wait-for-chat", "0")
    assert (code, out) == (0, "Nightly run: rejected: drift\n")

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(job, "run_sleep", broken)
    code, out, _ = run(capsys, "nightly")
    assert (code, out) == (1, "Nightly run: failed: RuntimeError: boom\n")


def test_a_broken_config_is_the_runs_recorded_failure(capsys, paths, journal):
    paths.config_file.write_text("skip_on_battery = 'sometimes'\n")
    code, out, _ = run(capsys, "nightly")
    assert code == 1 and out.startswith("Nightly run: failed: ")
    run_ = journal.last_nightly_run()
    assert run_.outcome == "failed" and "skip_on_battery" in run_.detail


def test_a_damaged_schedule_record_is_one_line(capsys, paths):
    paths.schedule_file.write_text("{not json")
    code, _, err = run(capsys, "schedule", "status")
    assert code != 0 and err.startswith(f"pocketsleep: error: {paths.schedule_file} is "
                                        "damaged") and "schedule install" in err
    assert info.next_scheduled_sleep(paths) is None  # the status bar just says not scheduled
    code, out, _ = run(capsys, "history")  # other commands are not disturbed
    assert code == 0


# -- catching up a missed night: a real detached process ------------------------------------


def missed_schedule(paths):
    installed = dt.datetime.now() - dt.timedelta(days=3)
    state.save(paths, InstalledSchedule(
        system="cron", at="03:00", name="pocketsleep-nightly-test", location="test",
        command=["x"], installed_at=installed.astimezone(dt.timezone.utc).isoformat()))


def wait_for_outcome(paths, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Journal.open(paths.journal) as j:
            run = j.last_nightly_run()
        if run is not None and run.outcome != "running":
            return run
        time.sleep(0.5)
    raise AssertionError(f"the catch-up did not finish; output: "
                         f"{paths.nightly_output.read_text() if paths.nightly_output.exists() else ''}")


def test_a_missed_night_catches_up_in_the_background_at_the_next_start(
        capsys, paths, journal, tmp_path):
    """Started by `pocketsleep status`: detached, it records its outcome in the journal.
    The model named in config.toml does not exist, so the sleep fails fast (and says
    why) instead of training for minutes."""
    missed_schedule(paths)
    paths.config_file.write_text(f'model = "{tmp_path / "no-such-model.gguf"}"\n')
    journal.log_conversation([{"role": "user", "content": "My dog is Biscuit."}])
    code, out, err = run(capsys, "status")
    assert code == 0 and out.startswith("pocketsleep")
    assert err.startswith("pocketsleep: The nightly sleep due ")
    assert "did not run; it catches up now, in the background" in err
    run_ = wait_for_outcome(paths)
    assert run_.trigger == "catch-up" and run_.pid is not None
    assert run_.outcome == "failed" and "no-such-model.gguf" in run_.detail
    assert "Nightly run: failed" in paths.nightly_output.read_text()
    # Caught up: the next start says nothing.
    _, _, err = run(capsys, "status")
    assert err == ""


def test_the_chat_gets_the_catch_up_notice(paths, journal, monkeypatch):
    from pocketsleep.cli import nightly as nightly_cli
    from pocketsleep.cli.context import CliContext
    from pocketsleep.nightly import catchup

    missed_schedule(paths)
    journal.log_conversation([{"role": "user", "content": "hi"}])
    started = []
    monkeypatch.setattr(catchup, "spawn_detached", started.append)
    obj = CliContext(paths)
    nightly_cli.catch_up_at_start(obj, "chat")
    obj.close()
    [notice] = obj.notices
    assert "it catches up once you close the chat" in notice and len(started) == 1


@pytest.mark.parametrize("argv, catches_up", [
    (["history"], True), (["status"], True), (["schedule", "status"], False),
    (["sleep", "--report"], False)])
def test_which_commands_catch_up(capsys, paths, journal, monkeypatch, argv, catches_up):
    from pocketsleep.nightly import catchup

    missed_schedule(paths)
    journal.log_conversation([{"role": "user", "content": "hi"}])
    started = []
    monkeypatch.setattr(catchup, "spawn_detached", started.append)
    code, _, err = run(capsys, *argv)
    assert code == 0
    assert len(started) == int(catches_up) and ("did not run" in err) == catches_up
    assert (journal.last_nightly_run() is not None) == catches_up


def test_the_chat_shows_its_notices_and_the_next_scheduled_sleep(paths, journal):
    pytest.importorskip("textual")
    from test_tui_support import SIZE, async_test, make_app, ready, screen_text

    from pocketsleep.tui.widgets.status_bar import StatusBar

    missed_schedule(paths)  # at 03:00
    now = dt.datetime.now()
    expected = dt.datetime.combine(now.date(), dt.time(3, 0))
    if expected <= now:
        expected += dt.timedelta(days=1)

    @async_test
    async def chat():
        app = make_app(journal, paths=paths, notices=["The nightly sleep due X did not run."])
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            assert ("information", "The nightly sleep due X did not run.") in app.notes
            bar = app.chat.query_one(StatusBar)
            assert bar.info.next_sleep == f"{expected:%Y-%m-%d %H:%M}"
            assert f"next sleep: {expected:%Y-%m-%d %H:%M}" in screen_text(app)

    chat()


def test_pocketsleep_chat_holds_the_chat_lock_while_open(capsys, paths, monkeypatch):
    pytest.importorskip("textual")
    from pocketsleep.nightly.chat_lock import chats_closed
    from pocketsleep.tui.app import PocketsleepApp

    seen = {}

    def job_could_sleep() -> bool:
        with chats_closed(paths, 0) as got:
            return got

    def fake_run(app):
        seen["while open"] = job_could_sleep()
        seen["notices"] = app.notices

    monkeypatch.setattr(PocketsleepApp, "run", fake_run)
    code, _, _ = run(capsys, "chat")
    assert code == 0 and seen == {"while open": False, "notices": []}

    # A missed night: the catch-up starts once the chat holds its share (else it
    # could take the lock first), and the chat tells the user.
    from pocketsleep.nightly import catchup

    missed_schedule(paths)
    with Journal.open(paths.journal) as j:
        j.log_conversation([{"role": "user", "content": "hi"}])
    could_sleep_at_start = []
    monkeypatch.setattr(catchup, "spawn_detached",
                        lambda job: could_sleep_at_start.append(job_could_sleep()))
    run(capsys, "chat")
    assert could_sleep_at_start == [False]
    assert "it catches up once you close the chat" in seen["notices"][0]
    assert job_could_sleep()  # closed: the lock is free again

    # Started while a scheduled sleep holds it: the chat opens and says so.
    with chats_closed(paths, 0):
        run(capsys, "chat")
    assert seen["notices"] == ["The nightly sleep is running: it learns from your "
                               "conversations as they were when it started."]
