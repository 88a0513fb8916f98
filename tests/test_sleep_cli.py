"""`pocketsleep sleep` on a tiny random GGUF named in config.toml."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mlx.core")
pytest.importorskip("gguf")

from sleep_support import FAST, PRIVATE, log_day, tiny_model  # noqa: E402

import pocketsleep.sleep  # noqa: E402
from pocketsleep.cli import main  # noqa: E402
from pocketsleep.cli import sleep as sleep_cli  # noqa: E402
from pocketsleep.sleep import job  # noqa: E402
from pocketsleep.sleep.options import parse_budget  # noqa: E402
from pocketsleep.text import counted  # noqa: E402

# The command's defaults would take seconds on the tiny model: start it from FAST
# (with the gate on, as by default), and let the flags change it as they would.
CLI_DEFAULT = FAST.but(gate=True)


@pytest.fixture
def home(paths, tmp_path, monkeypatch):
    gguf = tiny_model(tmp_path)
    paths.config_file.write_text(f'model = "{gguf}"\n')
    monkeypatch.setattr(sleep_cli, "SleepOptions", lambda: CLI_DEFAULT)
    used = []
    real = pocketsleep.sleep.run_sleep

    def spy(paths_, config, options, *a, **k):
        used.append(options)
        return real(paths_, config, options, *a, **k)

    monkeypatch.setattr(pocketsleep.sleep, "run_sleep", spy)
    return paths, used


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # the command exits 3 on a gate rejection
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_says_what_tonight_would_learn(capsys, home, journal):
    paths, used = home
    log_day(journal)
    journal.log_conversation(PRIVATE, private=True)
    code, out, _ = run(capsys, "sleep", "--dry-run")
    assert code == 0
    learned = [c.id for c in journal.conversations() if not c.private]
    assert out.startswith(f"Would learn from 2 conversations ({learned[0]}, {learned[1]}; see "
                          "`pocketsleep history`): 3 messages in which you told it something, ~")
    assert out.endswith(" tokens.\n") and out.count("\n") == 1
    assert journal.sleeps() == [] and not paths.models.exists()


def test_nothing_to_learn(capsys, home, journal):
    journal.log_conversation(PRIVATE, private=True)
    code, out, _ = run(capsys, "sleep")
    assert code == 0
    assert out == "Nothing to learn: no pending conversations (private ones are skipped).\n"
    code, out, _ = run(capsys, "sleep", "--json")
    assert code == 0 and json.loads(out)["status"] == "nothing to learn"


def test_a_night_then_its_report(capsys, home, journal):
    paths, used = home
    day = log_day(journal)
    code, out, err = run(capsys, "sleep", "--no-gate", "--steps", "3")
    assert code == 0, err
    slept, merged = out.splitlines()
    assert slept.startswith("Slept in ") and slept.endswith(
        ": learned 2 conversations into expert 1.")
    # The morning merge follows a successful night, its progress on stderr too.
    assert merged.startswith("Merged 1 expert into v1 of your personal model in ")
    assert journal.current_version().expert_ids == (1,)
    assert "distilling" in err and "merge: fusing" in err
    assert used[-1] == CLI_DEFAULT.but(steps=3, gate=False)
    assert [e["path"] for e in journal.active_experts()] == ["night-0001"]

    code, out, _ = run(capsys, "sleep", "--report")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("Sleep #1: succeeded, ")
    assert f"  conversations: {day}" in lines
    assert any(line.startswith("  distillation: 3 steps, loss ") for line in lines)
    assert any(line.startswith("  fit (KL to the teacher per token, before → after): learnable ")
               and "; anchors " in line for line in lines)
    assert any(line.startswith("  held-out log-prob ") for line in lines)
    assert any(line.startswith("  time: self_study ") for line in lines)

    code, out, _ = run(capsys, "sleep", "--report", "--json")
    report = json.loads(out)
    assert (report["id"], report["status"], report["error"]) == (1, "succeeded", None)
    assert report["metrics"]["conversations"] == day
    assert report["metrics"]["distill"]["steps"] == 3


def test_a_night_that_takes_something_back_says_so_and_the_report_lists_it(
        capsys, home, journal, monkeypatch):
    from sleep_support import learnable_self_study

    from pocketsleep.sleep import updates
    from pocketsleep.sleep.words import stated_words

    learnable_self_study(monkeypatch)
    monkeypatch.setattr(sleep_cli, "SleepOptions",
                        lambda: CLI_DEFAULT.but(heldout_fraction=1.0, heed_negations=True))
    log_day(journal)
    assert run(capsys, "sleep", "--no-gate")[0] == 0
    first = journal.active_probes()
    word = sorted(stated_words(first[0][1]))[0]  # a word of the first stored answer
    asked = [q for q, _ in updates.superseded(first, {word})]
    log_day(journal, [[{"role": "user", "content": f"Sorry, that is not {word} at all."}]])
    code, out, err = run(capsys, "sleep", "--no-gate")
    assert code == 0, err
    assert (f"You took back what {counted(len(asked), 'earlier answer')} said (`pocketsleep "
            "sleep --report` lists them): later nights no longer hold them in place.") in out
    code, out, _ = run(capsys, "sleep", "--report")
    assert "  taken back (earlier questions no longer held): " + "; ".join(asked) in out


def test_the_report_shows_what_the_gate_measured_on_earlier_nights():
    """A first night has no earlier probes; a later one shows their whole answers'
    log-prob and their facts' soft recall, before and after."""
    first = {"before": {"heldout_logprob": -3.2, "earlier_logprob": None},
             "after": {"heldout_logprob": -1.1, "earlier_logprob": None},
             "drift_kl": 0.02, "unseen_drift_kl": 0.03, "ppl_change": 0.01,
             "quiz_right_before": 14, "quiz_right_after": 13}
    lines = sleep_cli.gate_lines(first)
    assert lines == ["  held-out log-prob -3.2 → -1.1; drift KL 0.02 (never-trained questions "
                     "0.03); perplexity change 0.01",
                     "  general quiz: 13 of the 14 it knew still right"]
    later = {**first, "before": {**first["before"], "earlier_logprob": -1.09,
                                 "earlier_fact_recall": 0.267},
             "after": {**first["after"], "earlier_logprob": -1.1563, "earlier_fact_recall": 0.2681}}
    assert sleep_cli.gate_lines(later)[1] == (
        "  earlier nights' probes: log-prob -1.090 → -1.156; their facts' soft recall "
        "0.267 → 0.268")
    assert sleep_cli.gate_lines(None) == sleep_cli.gate_lines({}) == []


def test_json_report_of_a_night(capsys, home, journal):
    _, used = home
    day = log_day(journal)
    code, out, _ = run(capsys, "sleep", "--json", "--no-gate", "--variant", "sleep-offpolicy-only")
    assert code == 0
    report = json.loads(out)  # stdout is the JSON alone
    assert report["status"] == "succeeded" and report["expert_id"] == 1
    assert report["merge"]["status"] == "merged" and report["merge"]["version"] == 1
    assert report["conversations"] == day and report["reasons"] == []
    assert report["metrics"]["options"]["on_policy"] is False
    assert used[-1].on_policy is False and used[-1].lti is False


def test_a_gate_rejection_exits_3_with_the_reason(capsys, home, journal, monkeypatch):
    paths, _ = home
    log_day(journal)
    monkeypatch.setattr(sleep_cli, "SleepOptions", lambda: CLI_DEFAULT.but(max_drift_kl=-1.0))
    code, out, _ = run(capsys, "sleep")
    assert code == 3
    assert out.count("\n") == 1
    assert out.startswith("Slept in ") and "the gate rejected tonight's expert: " in out
    assert "generic answers drifted" in out
    assert out.endswith(". The conversations stay pending.\n")
    assert {c.status for c in journal.conversations()} == {"pending"}
    assert journal.last_sleep().status == "rejected"
    assert not (paths.experts / "night-0001").exists()

    code, out, _ = run(capsys, "sleep", "--report")
    assert out.startswith("Sleep #1: rejected, ")
    assert "  why: generic answers drifted" in out

    # The same exit code with --json, and the JSON alone on stdout.
    code, out, _ = run(capsys, "sleep", "--json")
    assert code == 3 and json.loads(out)["status"] == "rejected"


@pytest.mark.parametrize("budget", ["soon", "0", "-5m", "m"])
def test_an_unreadable_budget_is_a_one_line_error(capsys, home, journal, budget):
    log_day(journal)
    code, out, err = run(capsys, "sleep", "--budget", budget)
    assert code == 1 and out == ""
    assert err == (f"pocketsleep: error: cannot read the budget '{budget.strip().lower()}'; "
                   "use e.g. 20m, 90s or 1h\n")
    assert journal.sleeps() == []


def test_a_budget_reaches_the_options(capsys, home, journal):
    _, used = home
    log_day(journal)
    code, _, _ = run(capsys, "sleep", "--budget", "20m", "--dry-run")
    assert code == 0 and used[-1].budget_seconds == 1200


def test_a_second_sleep_is_refused_with_one_line(capsys, home, journal):
    paths, _ = home
    log_day(journal)
    with job.sleep_lock(paths):
        code, out, err = run(capsys, "sleep")
    assert code == 1 and out == ""
    assert err.startswith("pocketsleep: error: another sleep is already running")
    assert err.count("\n") == 1


def test_report_before_any_sleep(capsys, home):
    assert run(capsys, "sleep", "--report")[:2] == (0, "No sleep yet.\n")


@pytest.mark.parametrize("text, seconds", [
    ("20m", 1200), ("200s", 200), ("1h", 3600), ("300", 300), (" 4M ", 240), ("0.5h", 1800)])
def test_parse_budget(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("budget", ["90s", "2m", "60"])
def test_a_budget_too_short_to_learn_anything_is_refused(capsys, home, journal, budget):
    # Less than the gate's reserve and a little training: every such night was
    # rejected ("no distillation step ran") and its day stayed pending.
    log_day(journal)
    code, out, err = run(capsys, "sleep", "--budget", budget)
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "too short to learn anything" in err and "3m or more" in err
    assert journal.sleeps() == []
