"""The command line: output, and one clean line for every user error."""

import json
import subprocess
import sys

import pytest

from pocketsleep.cli import cli, main
from pocketsleep.journal import Journal

CONVERSATION = [
    {"role": "user", "content": "My sister Ada lives in Lisbon."},
    {"role": "assistant", "content": "Lisbon is lovely. Do you visit her often?"},
]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def conv_file(tmp_path):
    path = tmp_path / "conv.json"
    path.write_text(json.dumps(CONVERSATION))
    return path


def test_status_on_a_fresh_home_reports_an_empty_journal(capsys, data_home):
    code, out, _ = run(capsys, "status")
    assert code == 0
    assert "journal is empty" in out
    assert str(data_home.resolve()) in out
    assert (data_home / "journal.db").exists()


def test_status_json(capsys, conv_file):
    run(capsys, "log", "--file", str(conv_file))
    code, out, _ = run(capsys, "status", "--json")
    info = json.loads(out)
    assert code == 0
    assert info["conversations"]["waiting"] == 1
    assert info["conversations"]["messages"] == 2
    assert info["last_sleep"] is None


def test_log_history_and_forget(capsys, conv_file):
    code, out, _ = run(capsys, "log", "--file", str(conv_file), "--title", "Ada")
    assert (code, out.strip()) == (0, "Logged conversation 1 (2 messages).")
    code, out, _ = run(capsys, "history")
    assert "Ada" in out and "pending" in out
    code, out, _ = run(capsys, "history", "1")
    assert "Lisbon is lovely" in out and out.index("user:") < out.index("assistant:")
    code, out, _ = run(capsys, "forget", "1", "--yes")
    assert code == 0 and "2 messages deleted" in out
    code, out, _ = run(capsys, "history", "--json")
    assert json.loads(out)[0]["status"] == "forgotten"


def test_log_private_from_stdin(capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(CONVERSATION)))
    code, out, _ = run(capsys, "log", "--file", "-", "--private")
    assert code == 0 and "private" in out
    code, out, _ = run(capsys, "history")
    row = out.splitlines()[1].split()
    assert row[4] == "private" and "pending" not in out  # it never waits for a sleep


def test_log_with_the_day_it_was_held(capsys, conv_file):
    code, _, _ = run(capsys, "log", "--file", str(conv_file), "--date", "2026-03-02")
    assert code == 0
    _, out, _ = run(capsys, "history", "--json")
    assert json.loads(out)[0]["started_at"] == "2026-03-02T12:00:00+00:00"


@pytest.mark.parametrize("day, message", [("March 2", "expected a day as YYYY-MM-DD"),
                                          ("2999-01-01", "has not come yet")])
def test_log_with_a_bad_date_writes_nothing(capsys, conv_file, tmp_path, day, message):
    run(capsys, "status")  # the journal exists already
    code, _, err = run(capsys, "log", "--file", str(conv_file), "--date", day)
    assert code == 1 and message in err and err.count("\n") == 1
    with Journal.open(tmp_path / "home" / "journal.db") as j:
        assert j.conversations() == []


def test_history_neutralises_terminal_escapes(capsys, tmp_path):
    path = tmp_path / "evil.json"
    path.write_text(json.dumps([{"role": "user", "content": "hi \x1b]0;pwned\x07 \x1b[2J"}]))
    run(capsys, "log", "--file", str(path))
    _, out, _ = run(capsys, "history", "1")
    assert "\x1b" not in out and "\\x1b" in out


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "is not valid JSON"),
        ("{}", "expected a non-empty JSON list"),
        ("[]", "expected a non-empty JSON list"),
        ('[{"role": "bot", "content": "x"}]', "message 1 has role 'bot'"),
        ('[{"role": "user"}]', "message 1 has no text 'content'"),
        ('["hello"]', "message 1 is not an object"),
        ('[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]',
         "message 2 is empty"),
    ],
)
def test_malformed_log_file_writes_nothing(capsys, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    run(capsys, "status")  # the journal exists already
    code, out, err = run(capsys, "log", "--file", str(path))
    assert code == 1
    assert message in err and err.count("\n") == 1
    with Journal.open(tmp_path / "home" / "journal.db") as j:
        assert j.conversations() == []


@pytest.mark.parametrize("question", [[""], ["   \n"], [" ", ""]])
def test_an_empty_question_is_refused_before_any_model_loads(capsys, question):
    code, out, err = run(capsys, "ask", *question)
    assert code == 1 and out == ""
    assert err.startswith("pocketsleep: error: the question is empty") and err.count("\n") == 1


def test_log_says_one_message_not_one_messages(capsys, tmp_path):
    path = tmp_path / "one.json"
    path.write_text('[{"role": "user", "content": "My dog is Biscuit."}]')
    code, out, _ = run(capsys, "log", "--file", str(path))
    assert code == 0 and "(1 message)." in out


def test_missing_log_file(capsys, tmp_path):
    code, _, err = run(capsys, "log", "--file", str(tmp_path / "nope.json"))
    assert code == 1 and "no such file" in err


def test_unknown_conversation(capsys):
    code, _, err = run(capsys, "history", "9")
    assert code == 1 and "no conversation 9" in err


def test_forget_asks_for_confirmation(capsys, conv_file, monkeypatch):
    import io

    run(capsys, "log", "--file", str(conv_file))
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, _, err = run(capsys, "forget", "1")
    assert code == 1 and "Aborted" in err
    _, out, _ = run(capsys, "history", "1")
    assert "Lisbon" in out


def test_every_command_has_help(capsys):
    for name in cli.commands:
        code, out, _ = run(capsys, name, "--help")
        assert code == 0 and "Usage:" in out, name


def test_wrong_flag_is_a_usage_error(capsys):
    code, _, err = run(capsys, "status", "--colour")
    assert code == 2 and "No such option" in err


def _cli(*args, env_home):
    import os

    env = dict(os.environ, POCKETSLEEP_HOME=str(env_home))
    return subprocess.run(
        [sys.executable, "-m", "pocketsleep", *args], capture_output=True, text=True, env=env
    )


def test_version_in_a_real_process(tmp_path):
    from pocketsleep import __version__

    r = _cli("--version", env_home=tmp_path / "h")
    assert r.returncode == 0 and __version__ in r.stdout


def test_journal_that_is_not_sqlite_gives_one_line_and_no_traceback(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    (home / "journal.db").write_text("garbage " * 1000)
    r = _cli("status", env_home=home)
    assert r.returncode == 1
    assert r.stderr.startswith("pocketsleep: error:") and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1
    assert (home / "journal.db").read_text() == "garbage " * 1000


def test_unusable_data_home_gives_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    r = _cli("status", env_home=tmp_path / "file" / "home")
    assert r.returncode == 1 and "POCKETSLEEP_HOME" in r.stderr and "Traceback" not in r.stderr


def test_files_are_created_private(tmp_path, conv_file):
    import stat

    home = tmp_path / "h"
    assert _cli("log", "--file", str(conv_file), env_home=home).returncode == 0
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for f in home.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f


def test_ctrl_c_exits_130_and_a_declined_confirmation_1(capsys, monkeypatch):
    """Click turns Ctrl-C into Abort; it must still read as an interrupt."""
    import io

    import click

    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))

    @cli.command("interrupted-for-test")
    def interrupted():
        raise KeyboardInterrupt

    @cli.command("declined-for-test")
    def declined():
        click.confirm("go on?", abort=True)

    try:
        assert main(["interrupted-for-test"]) == 130
        assert "Interrupted." in capsys.readouterr().err
        assert main(["declined-for-test"]) == 1
        assert "Aborted." in capsys.readouterr().err
    finally:
        cli.commands.pop("interrupted-for-test")
        cli.commands.pop("declined-for-test")


def test_the_waiting_note_shows_on_a_terminal_only_and_is_wiped(capsys):
    from pocketsleep.cli.ask import WaitingNote

    quiet = WaitingNote(enabled=False)
    quiet.show("loading the model…")
    quiet.clear()
    assert capsys.readouterr().err == ""
    note = WaitingNote(enabled=True)
    note.show("loading the model…")
    note.clear()
    note.clear()  # wiped once
    err = capsys.readouterr().err
    assert err == "loading the model…\r" + " " * 18 + "\r"
