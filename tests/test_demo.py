"""`pocketsleep demo`: the scripted day, the before/after table, and the demo end to
end on a tiny random model in a temporary home (or a kept one)."""

from __future__ import annotations

import tempfile

import pytest

from pocketsleep import demo
from pocketsleep.backends.fake import FakeEngine
from pocketsleep.cli import demo as demo_cli
from pocketsleep.cli import main
from pocketsleep.config import Config, Paths
from pocketsleep.eval.suite import Probe
from pocketsleep.journal import Journal
from pocketsleep.sleep.episode import Episode


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_script_states_every_fact_it_asks_about_in_a_user_turn():
    said = " ".join(m["content"] for c in demo.CONVERSATIONS for m in c if m["role"] == "user")
    for probe in demo.QUESTIONS:
        assert any(a in said for a in probe.answers), probe
        assert probe.question.endswith("?")
    assert 2 <= len(demo.CONVERSATIONS) <= 3 and 3 <= len(demo.QUESTIONS) <= 4


def test_the_day_is_logged_pending_for_the_sleep(journal):
    demo.log_day(journal)
    episode = Episode.from_journal(journal)
    assert len(episode.conversation_ids) == len(demo.CONVERSATIONS)
    assert {c.source for c in journal.pending_conversations()} == {"demo"}


def test_answers_are_asked_closed_book_and_scored_like_eval(monkeypatch, tmp_path):
    engine = FakeEngine().enqueue("Her name is Waffles.", "A waffle-loving dog.")
    monkeypatch.setattr("pocketsleep.engines.open_engine", lambda paths, config: engine)
    questions = demo.QUESTIONS[:2]
    answers = demo.ask_all(Paths(tmp_path), Config(), questions)
    # "waffle" is not the whole word "corgi": wrong, as eval's judge says.
    assert answers == [demo.Answer("Her name is Waffles.", True),
                       demo.Answer("A waffle-loving dog.", False)]
    assert [p[-1]["content"] for p in engine.prompts] == [q.question for q in questions]
    assert not any("Waffles" in m["content"] for p in engine.prompts for m in p)


def test_the_table_marks_and_wraps_answers_to_fit():
    questions = (Probe("What is my dog's name?", ("Waffles",)), Probe("Where?", ("Lisbon",)))
    before = [demo.Answer("I don't know.", False), demo.Answer("", False)]
    long = "Your dog is called Waffles, a fine corgi. " * 3
    after = [demo.Answer(long, True), demo.Answer("Lisbon\x1b[2J", True)]
    lines = demo_cli.answer_table(questions, before, after, width=80).splitlines()
    assert lines[0].split() == ["question", "expected", "before", "sleep", "after", "sleep"]
    assert lines[2].startswith("What is my dog's name?  Waffles   ✗ I don't know.")
    assert all(len(line) <= 80 for line in lines)
    # The long answer is wrapped under its column, never cut.
    col = lines[0].index("after sleep")
    wrapped = [line[col:].strip() for line in lines[2:] if len(line) > col and line[col:].strip()]
    first = wrapped.index(next(w for w in wrapped if w.startswith("✓ Your dog")))
    assert " ".join(wrapped[first:first + 8]).startswith("✓ " + " ".join(long.split()))
    where = next(line for line in lines if line.startswith("Where?"))
    assert "✗ (nothing)" in where and "✓ Lisbon\\x1b[2J" in where  # no escape reaches the terminal


# -- end to end on a tiny random model ------------------------------------------------

@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tiny GGUF, sleep options that take a second, and a private temp folder.

    The demo answers through the MLX engine here: llama-cpp-python's streaming skips
    its max_tokens check while the text ends in an unfinished UTF-8 sequence, and a
    random model can emit such bytes until the context is full (minutes, then an
    error); the real model does not."""
    pytest.importorskip("mlx.core")
    pytest.importorskip("gguf")
    from sleep_support import FAST, tiny_model

    monkeypatch.setattr(demo_cli, "SleepOptions", lambda: FAST)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    asked = []
    real = demo.ask_all

    def spy(paths, config, *a):
        with Journal.open(paths.journal) as j:
            worn = len(j.active_experts())
        answers = real(paths, config, *a)
        asked.append((paths.home, worn, answers))
        return answers

    monkeypatch.setattr(demo, "ask_all", spy)
    return tiny_model(tmp_path), temp, asked


def test_the_demo_runs_in_a_temporary_home_and_removes_it(capsys, tiny, data_home):
    gguf, temp, asked = tiny
    code, out, err = run(capsys, "demo", "--model", gguf, "--engine", "mlx")
    assert code == 0, err

    (home, worn_before, before), (home2, worn_after, after) = asked
    assert home == home2 and home.parent == temp
    assert (worn_before, worn_after) == (0, 1)  # after: the model wearing tonight's expert
    assert "you: I adopted a dog last weekend!" in out
    table = out[out.index("question "):]
    for probe, b, a in zip(demo.QUESTIONS, before, after):
        line = next(x for x in table.splitlines() if x.startswith(probe.question))
        assert probe.answers[0] in line
        assert line.count("✓") + line.count("✗") == 2
    n_before, n_after = sum(a.correct for a in before), sum(a.correct for a in after)
    assert f"Recall: {n_before}/4 before sleep, {n_after}/4 after." in out
    assert "The gate accepted tonight's expert (#1)" in out and "Slept in " in out
    assert "distilling" in err  # the sleep's progress
    assert list(temp.iterdir()) == []  # the temporary home is gone
    assert not data_home.exists()  # the user's own data home was never created


def test_a_rejected_night_is_said_honestly_and_kept_for_inspection(capsys, tiny, tmp_path,
                                                                   monkeypatch, data_home):
    gguf, temp, asked = tiny
    from sleep_support import FAST

    monkeypatch.setattr(demo_cli, "SleepOptions", lambda: FAST.but(gate=True, max_drift_kl=-1.0))
    kept = tmp_path / "kept"
    code, out, err = run(capsys, "demo", "--model", gguf, "--engine", "mlx", "--keep", kept)
    assert code == 0, err

    (home, _, before), (_, worn, after) = asked
    assert home == kept.resolve()
    assert worn == 0 and after == before  # the unchanged model, greedy: the same answers
    assert "The gate rejected tonight's expert (" in out
    assert "generic answers drifted (KL" in out  # the gate's own reasons, verbatim
    assert "the answers after sleep come from the unchanged model" in out
    assert f"Kept {kept.resolve()}." in out
    with Journal.open(kept / "journal.db") as journal:
        assert len(journal.pending_conversations()) == len(demo.CONVERSATIONS)
        assert journal.last_sleep().status == "rejected"
    assert list(temp.iterdir()) == [] and not data_home.exists()


def test_bad_input_is_one_line_before_anything_loads(capsys, tmp_path, monkeypatch, data_home):
    def no_model(*a, **k):
        raise AssertionError("no model may load")

    monkeypatch.setattr("pocketsleep.engines.open_engine", no_model)
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (["--keep", full], "the folder is not empty"),
        (["--keep", a_file], "not a folder"),
        (["--budget", "soon"], "cannot read the budget 'soon'"),
        (["--engine", "tpu"], "Invalid value for '--engine'"),
    ]
    for argv, message in cases:
        code, out, err = run(capsys, "demo", *argv)
        assert code != 0, argv
        assert message in err and "Traceback" not in err, err
    assert (full / "notes.txt").read_text() == "mine" and len(list(full.iterdir())) == 1
    assert not data_home.exists()
