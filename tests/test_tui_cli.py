"""`pocketsleep chat` on the command line, and the app's pure helpers."""

from __future__ import annotations

import sys
import types

from pocketsleep.cli import cli, main
from pocketsleep.journal import Journal
from pocketsleep.tui.history import prompt_for_answer, superseded_ids, title_from
from pocketsleep.tui.info import describe_sleep, format_when


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_chat_is_a_command_with_its_options(capsys):
    assert "chat" in cli.commands
    code, out, _ = run(capsys, "chat", "--help")
    assert code == 0
    for option in ("--model", "--engine", "--conversation", "mlx|llamacpp"):
        assert option in out


def test_chat_without_textual_says_how_to_install_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "textual", None)  # import textual -> ImportError
    code, _, err = run(capsys, "chat")
    assert code == 1
    assert "pip install 'pocketsleep[chat]'" in err and "Traceback" not in err


def test_chat_refuses_an_unknown_or_forgotten_conversation(capsys, paths):
    code, _, err = run(capsys, "chat", "--conversation", "42")
    assert code == 1 and "no conversation 42" in err
    with Journal.open(paths.journal) as journal:
        cid = journal.log_conversation([{"role": "user", "content": "x"}])
        journal.forget(cid)
    code, _, err = run(capsys, "chat", "-c", str(cid))
    assert code == 1 and "was forgotten" in err


def test_chat_builds_the_app_with_a_lazy_engine_factory(capsys, monkeypatch, paths):
    from pocketsleep.tui.app import PocketsleepApp

    with Journal.open(paths.journal) as journal:
        cid = journal.log_conversation([{"role": "user", "content": "x"}])
    started = []
    monkeypatch.setattr(PocketsleepApp, "run", lambda self: started.append(self))
    calls = []
    engines = types.ModuleType("pocketsleep.engines")
    engines.open_engine = lambda paths, config, model=None, engine=None: calls.append(
        (paths, config, model, engine)) or "ENGINE"
    monkeypatch.setitem(sys.modules, "pocketsleep.engines", engines)

    code, _, _ = run(capsys, "chat", "--model", "my.gguf", "--engine", "llamacpp", "-c", str(cid))
    assert code == 0
    (app,) = started
    assert app.chat._initial_id == cid and app.paths.home == paths.home
    assert calls == []  # nothing loaded until the app's worker asks
    assert app.engine_factory() == "ENGINE"
    (got_paths, config, model, engine), = calls
    assert (got_paths.home, config.model, model, engine) == (paths.home, "default", "my.gguf",
                                                             "llamacpp")


class M:
    def __init__(self, id, role, content="x"):
        self.id, self.role, self.content = id, role, content


def test_the_prompt_skips_replaced_answers_and_stops_at_the_last_user_turn():
    history = [M(1, "user", "q1"), M(2, "assistant", "old"), M(3, "assistant", "new"),
               M(4, "user", "q2"), M(5, "assistant", "a2")]
    assert superseded_ids(history) == {2}
    assert prompt_for_answer(history) == [
        {"role": "user", "content": "q1"}, {"role": "assistant", "content": "new"},
        {"role": "user", "content": "q2"}]
    assert prompt_for_answer([M(1, "assistant")]) == []


def test_titles_and_times():
    assert title_from("  remember:\n my sister Ada lives in Lisbon ") == \
        "remember: my sister Ada lives in…"
    assert title_from("my dog Biscuit") == "my dog Biscuit"  # nothing cut, no "…"
    assert title_from("\x1b[31m") == "\\x1b[31m"
    assert title_from("   ") == "Untitled"
    assert format_when("not a date") == "not a date"
    assert describe_sleep(None) == "never"
