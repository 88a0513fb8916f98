"""`pocketsleep models` (list, merge, rollback), the catch-up merge at the start of
`ask` and chat, and what `status` and the chat's status bar say about versions."""

from __future__ import annotations

import json

import pytest

import pocketsleep.backends  # noqa: F401  (the fast BLAS, before mlx loads)

pytest.importorskip("mlx.core")
pytest.importorskip("mlx_lm")
pytest.importorskip("gguf")

from version_support import make_home  # noqa: E402

from pocketsleep.cli import main  # noqa: E402
from pocketsleep.tui.info import personal_model_version  # noqa: E402
from pocketsleep.versions import merge_if_needed  # noqa: E402

MISSED = ("pocketsleep: Merging 1 expert into a new version of your personal model first "
          "(the last merge was missed)…")


@pytest.fixture
def home(paths, tmp_path):
    return make_home(paths, tmp_path)


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, text):
    assert code != 0 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("pocketsleep: error: ")
    assert text in err


def test_no_versions_yet(capsys, home):
    code, out, _ = run(capsys, "models")
    assert code == 0 and out.startswith("No versions of your personal model yet")
    code, out, _ = run(capsys, "models", "--json")
    assert code == 0 and json.loads(out) == []
    code, _, err = run(capsys, "models", "rollback", "1")
    one_line_error(code, err, "nothing to roll back: there is no version of your personal model")


def test_listing_and_rolling_back_on_the_command_line(capsys, home, journal):
    home.night(journal, "dog walks", seed=1)
    code, out, _ = run(capsys, "models", "merge")
    assert code == 0 and out.startswith("Merged 1 expert into v1 of your personal model")
    home.night(journal, "cat food", seed=2)
    assert merge_if_needed(home.paths, home.config).status == "merged"
    code, out, _ = run(capsys, "models", "merge")
    assert code == 0 and out == "Your personal model v2 holds every expert; nothing to merge.\n"

    code, out, _ = run(capsys, "models")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "Versions of your personal model (newest first):"
    assert lines[1].split()[:2] == ["v2", "current"] and "2 experts (nights 1, 2)" in lines[1]
    assert lines[2].strip() == 'learned: "cat food"'  # what v2 added over v1
    assert lines[3].split()[:2] == ["v1", "previous"] and "1 expert (night 1)" in lines[3]
    assert lines[4].strip() == 'learned: "dog walks"'
    listed = json.loads(run(capsys, "models", "--json")[1])
    assert [(v["version"], v["status"], [e["id"] for e in v["experts"]]) for v in listed] == [
        (2, "current", [1, 2]), (1, "previous", [1])]
    assert listed[0]["checks"]["max_logit_diff"] < 1e-3 and listed[0]["size_bytes"] > 0

    for arg, text in (("9", "no version v9 of your personal model; `pocketsleep models`"),
                      ("v2", "v2 is already the current version"),
                      ("two", "'two' is not a version number; give one like 3 or v3")):
        code, _, err = run(capsys, "models", "rollback", arg)
        one_line_error(code, err, text)

    code, out, _ = run(capsys, "models", "rollback", "v1")
    assert code == 0
    assert out.splitlines() == [
        "Your personal model is v1 again (was v2).",
        "Switched off experts 2; 1 conversation will be learned again at the next sleep."]
    assert personal_model_version(journal, home.paths) == "v1"


def test_ask_merges_first_when_the_merge_was_missed(capsys, home, journal):
    home.night(journal, "dog", seed=1)  # slept, but the merge never ran
    assert personal_model_version(journal, home.paths) == "base + 1 expert"
    code, out, err = run(capsys, "ask", "Where is Rex?", "--engine", "mlx", "--max-tokens", "2")
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("pocketsleep: ")]
    assert lines[0] == MISSED
    assert lines[1].startswith("pocketsleep: Merged 1 expert into v1 of your personal model")
    assert journal.current_version().id == 1
    assert personal_model_version(journal, home.paths) == "v1"

    code, _, err = run(capsys, "ask", "Where is Rex?", "--engine", "mlx", "--max-tokens", "2")
    assert code == 0 and "Merg" not in err  # up to date: nothing said
    code, _, err = run(capsys, "ask", "hi", "--model", str(home.gguf), "--engine", "mlx",
                       "--max-tokens", "2")
    assert code == 0 and "Merg" not in err


def test_a_failed_catch_up_is_one_line_and_the_answer_still_comes(capsys, home, journal,
                                                                  monkeypatch):
    from pocketsleep.backends import mlx_fuse
    from pocketsleep.errors import InputError

    home.night(journal, "dog", seed=1)

    def full_disk(*a, **k):
        raise InputError("no space left on the disk")

    monkeypatch.setattr(mlx_fuse, "fuse_folder", full_disk)
    code, out, err = run(capsys, "ask", "Where is Rex?", "--engine", "mlx", "--max-tokens", "2")
    assert code == 0 and out.strip()
    assert ("pocketsleep: Could not merge (no space left on the disk); answering with "
            "base + experts for now.") in err.splitlines()
    assert journal.versions() == []


def test_chat_merges_before_the_app_starts(capsys, home, journal, monkeypatch):
    pytest.importorskip("textual")
    from pocketsleep.tui.app import PocketsleepApp

    started = []
    monkeypatch.setattr(PocketsleepApp, "run", lambda self: started.append(
        journal.current_version()))
    home.night(journal, "dog", seed=1)
    code, _, err = run(capsys, "chat")
    assert code == 0 and MISSED in err.splitlines()
    assert started[0].id == 1  # merged before the app ran


def test_ask_log_records_the_version_that_answered(capsys, home, journal):
    def logged_answer():
        code, _, err = run(capsys, "ask", "Where is Rex?", "--engine", "mlx",
                           "--max-tokens", "2", "--log")
        assert code == 0, err
        return journal.messages(journal.conversations()[-1].id)[-1]

    assert logged_answer().model_version is None  # the base model: no version yet
    home.night(journal, "dog", seed=1)
    merge_if_needed(home.paths, home.config)
    answer = logged_answer()
    assert (answer.role, answer.model_version) == ("assistant", 1)
    question = journal.messages(answer.conversation_id)[0]
    assert question.model_version is None  # the user wrote it


def test_the_chat_follows_the_personal_model_only(capsys, home, journal, monkeypatch):
    pytest.importorskip("textual")
    from pocketsleep.tui.app import PocketsleepApp

    follows = []
    monkeypatch.setattr(PocketsleepApp, "run", lambda self: follows.append(
        self.follows_personal_model))
    assert run(capsys, "chat")[0] == 0
    assert run(capsys, "chat", "--model", "someone/else")[0] == 0
    assert follows == [True, False]


def test_status_shows_the_version_and_disk_use(capsys, home, journal):
    home.night(journal, "dog", seed=1)
    merge_if_needed(home.paths, home.config)
    code, out, _ = run(capsys, "status")
    rows = {line[:14].strip(): line[15:] for line in out.splitlines()}
    assert rows["personal model"].startswith("v1 ")
    assert rows["disk use"].startswith("journal ") and "versions " in rows["disk use"]
    assert "experts " in rows["disk use"] and "model cache " in rows["disk use"]
    info = json.loads(run(capsys, "status", "--json")[1])
    assert info["personal_model"] == "v1" and info["disk"]["versions"] > 0
    assert info["disk"]["model_cache"] > 0 and not any(" " in k for k in info["disk"])
