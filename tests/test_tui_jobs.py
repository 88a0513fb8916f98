"""Running pocketsleep subcommands in their own process from the chat app."""

from __future__ import annotations

import click
import pytest
from test_tui_support import SIZE, async_test, make_app, ready, say, screen_text, wait_for

from pocketsleep.backends.fake import FakeEngine
from pocketsleep.cli import cli
from pocketsleep.tui.jobs import Job, parse_progress
from pocketsleep.tui.screens import ConfirmScreen
from pocketsleep.tui.widgets import JobPanel, JobView


@pytest.mark.parametrize("line, expected", [
    ("consolidating 45%", 0.45),
    ("step 3/4: dreaming", 0.75),
    ("100 %", 1.0),
    ("no numbers here", None),
    ("5/0 weird", None),
])
def test_parse_progress(line, expected):
    assert parse_progress(line) == expected


def shell(script: str) -> list[str]:
    """An argv prefix that runs `script` instead of pocketsleep (extra args ignored)."""
    return ["sh", "-c", script, "sh"]


@async_test
async def test_a_real_subcommand_runs_on_the_same_data_home(journal, paths):
    app = make_app(journal, paths=paths)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        job = await app.run_subcommand("Status", "status")
        assert job.argv[1:3] == ["-m", "pocketsleep"]
        await wait_for(pilot, lambda: not job.running, timeout=10)
        await pilot.pause()
        assert job.returncode == 0
        assert any(str(paths.home) in line for line in job.tail)
        assert "Status: done" in screen_text(app)
        assert ("information", "Status finished.") in app.notes


@async_test
async def test_progress_is_visible_and_chat_stays_usable_meanwhile(journal, tmp_path):
    go_on = tmp_path / "go-on"
    app = make_app(journal, FakeEngine().enqueue("still here"))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        job = await app.run_subcommand(
            "Sleep now", "sleep",
            argv_prefix=shell("printf 'seeding 10%%\\rseeding 40%%\\n';"
                              f" while [ ! -e {go_on} ]; do sleep 0.02; done;"
                              " echo 'gate: rejected \033[31m'; exit 3"))
        view = app.chat.query_one(JobView)
        await wait_for(pilot, lambda: view.query_one("ProgressBar").percentage == 0.4)
        assert "seeding 40%" in screen_text(app)
        await say(pilot, "are you there?")  # while the job runs
        assert journal.messages(app.chat.conversation_id)[-1].content == "still here"
        assert job.running
        go_on.touch()
        await wait_for(pilot, lambda: not job.running, timeout=5)
        await pilot.pause()
        assert job.returncode == 3 and view.has_class("-failed")
        assert "Sleep now: failed (exit 3)" in screen_text(app)
        assert any("gate: rejected \\x1b[31m" in e for e in app.errors())


def test_sleep_and_export_are_offered_only_when_the_cli_has_them(journal, monkeypatch):
    app = make_app(journal)

    def titles():
        return {c.title: c for c in app.get_system_commands(app.chat)}

    # Whatever the CLI has today, the palette agrees with it.
    assert ("Sleep now" in titles()) == ("sleep" in cli.commands)
    assert ("Export" in titles()) == ("export" in cli.commands)
    monkeypatch.setitem(cli.commands, "sleep", click.Command("sleep"))
    monkeypatch.setitem(cli.commands, "export", click.Command("export"))
    offered = titles()
    assert offered["Sleep now"].callback.args == ("Sleep now", "sleep")
    export_args = offered["Export"].callback.args
    assert export_args[:3] == ("Export", "export", "--gguf")
    assert export_args[3].endswith("exports/personal-model.gguf") and export_args[4] == "--force"
    monkeypatch.delitem(cli.commands, "sleep")
    monkeypatch.delitem(cli.commands, "export")
    assert not {"Sleep now", "Export"} & set(titles())


@async_test
async def test_quitting_while_a_job_runs_asks_and_then_stops_it(journal):
    app = make_app(journal)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        job = await app.run_subcommand("Export", "export", argv_prefix=shell("sleep 30"))
        await wait_for(pilot, lambda: job.process is not None)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert app.is_running and job.process.poll() is None
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
    assert job.process.wait(timeout=5) != 0  # terminated


@async_test
async def test_a_command_that_cannot_start_is_reported(journal):
    app = make_app(journal)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        job = await app.run_subcommand("Export", "export",
                                       argv_prefix=["/nonexistent/pocketsleep-binary"])
        await wait_for(pilot, lambda: not job.running)
        await pilot.pause()
        assert job.returncode == 127
        assert any("cannot start" in e for e in app.errors())
        assert app.chat.query_one(JobPanel).display


def test_job_messages_carry_printable_lines():
    posted = []
    job = Job("Test", [], argv_prefix=shell("printf 'a\\033]0;x\\007b\\r\\n\\nlast'"))
    job.run(posted.append)
    lines = [m.line for m in posted if isinstance(m, Job.Output)]
    assert lines == ["a\\x1b]0;x\\x07b", "last"]
    assert posted[-1].returncode == 0 and posted[-1].last_line == "last"


@async_test
async def test_the_same_subcommand_does_not_run_twice_at_once(journal):
    app = make_app(journal)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        first = await app.run_subcommand("Sleep now", "sleep", argv_prefix=shell("sleep 30"))
        again = await app.run_subcommand("Sleep now", "sleep", argv_prefix=shell("sleep 30"))
        assert again is first and len(app.jobs) == 1
        assert app.notes[-1] == ("warning", "Sleep now is already running.")
        first.stop()
        await wait_for(pilot, lambda: not first.running)
