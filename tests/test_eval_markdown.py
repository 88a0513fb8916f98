"""bench/results_table.py: the eval's JSON as the Markdown tables of RESULTS.md, from a
finished run and from a stopped one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_eval_verdicts import PPL_REASON, REPORTS, SUITE

from pocketsleep.backends.fake import FakeEngine
from pocketsleep.eval.harness import run_eval
from pocketsleep.eval.markdown import results_tables
from pocketsleep.eval.methods import METHODS, ClosedBook
from pocketsleep.eval.suite import parse_suite

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "results_table.py"


@pytest.fixture
def updates(monkeypatch):
    """Every result a run of none + sleep (night 1 rejected, night 2 kept) wrote."""
    reports = list(REPORTS)
    monkeypatch.setattr("pocketsleep.sleep.run_sleep", lambda *a, **k: reports.pop(0))
    monkeypatch.setattr("pocketsleep.engines.wear_experts", lambda *a: 0)
    out = []
    run_eval(parse_suite(SUITE), [ClosedBook, METHODS["sleep"]], seed=3, on_update=out.append,
             engine_factory=lambda p, c: FakeEngine(model_label="fake-model"))
    return out


def tables(text: str) -> list[list[list[str]]]:
    """The Markdown tables in `text`, as rows of cells (the separator row dropped)."""
    found = []
    for block in text.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.startswith("|")]
        if lines:
            found.append([[c.strip() for c in ln.strip("|").split(" | ")]
                          for ln in lines if not ln.startswith("|---")])
    return found


def test_a_finished_run(updates):
    text = results_tables(updates[-1])
    assert text.startswith("`pocketsleep eval` on two-days (2 days, 2 probes, 1 general probes), "
                           "fake-model on fake, seed 3, greedy, 32 tokens.\n")
    summary, per_night, verdicts = tables(text)
    assert all(len(row) == len(summary[0]) for row in summary)
    assert summary[1] == ["none", "0.00", "0/2 (0.00)", "0", "1/1", "+0.0%", "0",
                          summary[1][7], "—"]
    assert summary[2][0] == "sleep" and summary[2][-1] == "1/2"
    assert per_night == [["after night", "none", "sleep"],
                         ["1 (1 probes)", "0/1, general 1/1", "0/1, general 1/1"],
                         ["2 (2 probes)", "0/2, general 1/1", "0/2, general 1/1"]]
    assert verdicts[0] == ["method", "night", "gate", "why not kept", "held-out log-prob",
                           "drift KL", "unseen drift KL", "quiz kept", "perplexity change",
                           "self_study s",
                           "distill s", "gate s", "total s"]
    assert verdicts[1] == ["sleep", "1", "**rejected**", PPL_REASON, "-1.43 → -1.20", "0.120",
                           "0.240", "10/11", "+13.2%", "211", "394", "27", "632"]
    assert verdicts[2][:4] == ["sleep", "2", "kept", "—"]


def test_a_stopped_run_says_where_it_stopped(updates):
    stopped = updates[3]  # sleep's first night done, the second not
    text = results_tables(stopped, retention=True)
    assert "**Incomplete**: the run stopped during sleep." in text
    summary, per_night, verdicts, *retention = tables(text)
    assert summary[2] == ["sleep", "—", "stopped after night 1", "—", "—", "—", "0",
                          summary[2][7], "0/1"]
    assert per_night[2] == ["2 (2 probes)", "0/2, general 1/1", ""]
    assert len(verdicts) == 2
    assert retention[1] == [["sleep: day / after night", "1", "2"],
                            ["1", "0.00", "·"], ["2", "·", "·"]]


def test_a_bar_in_a_reason_does_not_split_its_cell(updates):
    result = updates[-1]
    result["methods"]["sleep"]["nights"][0]["reasons"] = ["a | b"]
    assert "| a \\| b |" in results_tables(result)


def test_the_script(updates, tmp_path):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(updates[3]))
    done = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == results_tables(updates[3])
    bad = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "none.json")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert "no such eval result" in bad.stderr
