"""A stopped eval keeps what it finished: the result grows night by night, --json is
rewritten whole after every night and method, and --resume runs only what is left.
On the fake engine: seconds in all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from pocketsleep.backends.fake import FakeEngine
from pocketsleep.cli import main
from pocketsleep.eval.harness import run_eval
from pocketsleep.eval.methods import METHODS, ClosedBook, InContext
from pocketsleep.eval.suite import parse_suite

SUITE = {
    "name": "three-days",
    "days": [
        {"date": f"2026-01-0{d}",
         "conversations": [[{"role": "user", "content": f"Fact number {d}."}]],
         "probes": [{"question": f"What is fact {d}?", "answers": [f"number {d}"]}]}
        for d in (1, 2, 3)
    ],
    "general_probes": [{"question": "Say hello.", "answers": ["hello"]}],
    "general_text": "The river runs to the sea.",
}
STABLE = {"final_recall", "today_recall", "stale_answers", "general_accuracy", "ppl_change",
          "retention", "sleep_seconds", "peak_rss_mb"}


class Stopper(ClosedBook):
    """Stopped (as by Ctrl-C) during its second night, the first time it runs."""

    name = "stopper"
    stops_left = 1

    def night(self, day, journal):
        if day.date == "2026-01-02" and Stopper.stops_left:
            Stopper.stops_left -= 1
            raise KeyboardInterrupt


@pytest.fixture
def suite_file(tmp_path):
    path = tmp_path / "three-days.json"
    path.write_text(json.dumps(SUITE))
    return path


@pytest.fixture
def engines(monkeypatch):
    opened = []

    def open_engine(paths, config, model=None, engine=None):
        opened.append(FakeEngine(model_label="fake-model"))
        return opened[-1]

    monkeypatch.setattr("pocketsleep.engines.open_engine", open_engine)
    monkeypatch.setitem(METHODS, "stopper", Stopper)
    Stopper.stops_left = 1
    return opened


def eval_cli(capsys, *argv):
    code = main(["eval", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, err


def test_the_result_grows_night_by_night():
    updates = []
    result = run_eval(parse_suite(SUITE), [ClosedBook, InContext], on_update=updates.append,
                      engine_factory=lambda paths, config: FakeEngine())
    # After each of 3 nights and at the end of each method, then once at the end.
    assert len(updates) == 2 * (3 + 1) + 1
    assert [u["complete"] for u in updates] == [False] * 8 + [True]
    assert updates[-1] == result and result["complete"] is True

    first = updates[0]
    assert {"suite", "model", "seed", "methods"} <= set(first)
    assert list(first["methods"]) == ["none"]
    none = first["methods"]["none"]
    assert (none["complete"], none["nights_done"]) == (False, 1)
    assert STABLE <= set(none)  # the keys are there; whole-run figures are null so far
    assert none["final_recall"] is none["today_recall"] is none["ppl_change"] is None
    assert none["retention"] == [[0.0, None, None], [None] * 3, [None] * 3]
    assert len(none["sleep_seconds"]) == len(none["peak_rss_mb"]) == 1
    assert none["recall_per_night"] == [0.0] and none["nights"] == []

    after_none = updates[3]["methods"]
    assert after_none["none"]["complete"] is True and after_none["none"]["final_recall"] == 0.0
    assert list(after_none) == ["none"]
    assert updates[4]["methods"]["icl"]["nights_done"] == 1
    assert updates[4]["methods"]["none"] == after_none["none"]
    for m in result["methods"].values():
        assert m["complete"] is True and m["nights_done"] == 3
        assert all(m[k] is not None for k in STABLE)


def test_a_run_stopped_in_method_two_leaves_method_one_whole(capsys, suite_file, tmp_path,
                                                              engines):
    out = tmp_path / "eval.json"
    code, err = eval_cli(capsys, "--suite", suite_file, "--methods", "none,stopper",
                         "--json", out)
    assert code == 130 and "Interrupted." in err  # Ctrl-C, as every command reports it
    result = json.loads(out.read_text())
    assert result["complete"] is False
    none, stopper = result["methods"]["none"], result["methods"]["stopper"]
    assert none["complete"] is True and STABLE <= set(none)
    assert (none["final_correct"], none["final_total"], none["general_accuracy"]) == (0, 3, 1.0)
    assert (stopper["complete"], stopper["nights_done"]) == (False, 1)
    assert stopper["final_recall"] is None and len(stopper["sleep_seconds"]) == 1
    assert stopper["retention"][0] == [0.0, None, None]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file
    # Method one's row was printed as soon as it finished.
    assert "eval: none: done: final recall 0/3 0.00, today's 0.00, stale 0" in err
    assert "stopper: done" not in err


KILLED = textwrap.dedent("""
    import os, signal, sys
    import pocketsleep.engines
    from pocketsleep.backends.fake import FakeEngine
    from pocketsleep.cli import main
    from pocketsleep.eval.methods import ClosedBook, register

    pocketsleep.engines.open_engine = lambda paths, config, **kw: FakeEngine()

    @register
    class Killed(ClosedBook):
        name = "killed"

        def night(self, day, journal):
            if day.date == "2026-01-03":
                os.kill(os.getpid(), signal.SIGKILL)

    sys.exit(main(sys.argv[1:]))
""")


def test_a_run_killed_in_method_two_leaves_a_whole_file(suite_file, tmp_path):
    out, tmp = tmp_path / "eval.json", tmp_path / "tmp"
    tmp.mkdir()

    def run(methods):
        return subprocess.run([sys.executable, "-c", KILLED, "eval", "--suite", str(suite_file),
                               "--methods", methods, "--json", str(out)],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "TMPDIR": str(tmp)})

    done = run("icl,killed")
    assert done.returncode == -9, done.stderr
    result = json.loads(out.read_text())
    assert result["complete"] is False
    assert result["methods"]["icl"]["complete"] is True
    killed = result["methods"]["killed"]
    assert (killed["complete"], killed["nights_done"]) == (False, 2)
    assert killed["retention"][1] == [None, 0.0, None]

    # The killed run's temporary homes stay behind; the next run removes them, and
    # leaves alone those of a run still going (this process's pid). (MLX keeps a
    # kernel cache in the same folder.)
    def homes():
        return sorted(p.name for p in tmp.glob(".pocketsleep-eval.*"))

    [left] = homes()
    running = tmp / f".pocketsleep-eval.{os.getpid()}-abc"
    running.mkdir()
    done = run("icl")
    assert done.returncode == 0, done.stderr
    assert f"removed {tmp / left}, left by a run that was killed" in done.stderr
    assert homes() == [running.name]


def test_resume_runs_only_the_methods_not_finished(capsys, suite_file, tmp_path, engines):
    out = tmp_path / "eval.json"
    assert eval_cli(capsys, "--suite", suite_file, "--methods", "none,stopper",
                    "--json", out, "--seed", 4)[0] == 130
    earlier = json.loads(out.read_text())

    code, err = eval_cli(capsys, "--suite", suite_file, "--methods", "none,stopper",
                         "--resume", out, "--seed", 4)
    assert code == 0, err
    result = json.loads(out.read_text())  # written back to the same file
    assert result["complete"] is True and list(result["methods"]) == ["none", "stopper"]
    assert result["methods"]["none"] == earlier["methods"]["none"]  # kept, not run again
    assert "eval: none: complete in the earlier run, not run again" in err
    assert "eval: none: day 1/3" not in err and "eval: stopper: day 3/3" in err
    assert result["methods"]["stopper"]["complete"] is True
    assert "eval: stopper: done: final recall 0/3" in err


def test_resume_with_every_method_finished_loads_no_model(capsys, suite_file, tmp_path, engines):
    out = tmp_path / "eval.json"
    assert eval_cli(capsys, "--suite", suite_file, "--methods", "none", "--json", out)[0] == 0
    assert len(engines) == 1
    code, err = eval_cli(capsys, "--suite", suite_file, "--methods", "none", "--resume", out)
    assert code == 0, err
    assert len(engines) == 1
    result = json.loads(out.read_text())
    assert result["complete"] is True
    assert (result["model_name"], result["engine"]) == ("fake-model", "fake")  # the earlier's


def test_resume_refuses_a_result_of_other_settings(capsys, suite_file, tmp_path, engines):
    out = tmp_path / "eval.json"
    assert eval_cli(capsys, "--suite", suite_file, "--methods", "none", "--json", out)[0] == 0
    edited = dict(SUITE, general_text="Another text.")
    other_suite = tmp_path / "three-days-edited.json"
    other_suite.write_text(json.dumps(edited))
    not_json = tmp_path / "notes.json"
    not_json.write_text("[1, 2]")
    cases = [
        (["--seed", 1], "cannot resume from an earlier result with seed 0 (this run: 1)"),
        (["--days", 2], "with days 3 (this run: 2)"),
        (["--max-tokens", 8], "with max_tokens 32 (this run: 8)"),
        (["--suite", other_suite], "with suite_digest"),
        (["--resume", not_json], "is not a result of pocketsleep eval"),
        (["--resume", tmp_path / "missing.json"], "no such eval result"),
    ]
    for extra, message in cases:
        argv = ["--suite", suite_file, "--methods", "none", "--resume", out, *extra]
        code, err = eval_cli(capsys, *argv)
        assert code == 1 and message in err and err.count("\n") == 1, (extra, err)
    assert len(engines) == 1  # none of them loaded a model
