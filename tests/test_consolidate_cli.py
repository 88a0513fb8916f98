"""Consolidation at the end of a night: `pocketsleep sleep` (and --consolidate-now)
on a tiny random GGUF, and the nightly job (with the sleep and the consolidation
replaced by fakes)."""

from __future__ import annotations

import json

import pytest

from pocketsleep.config import Config
from pocketsleep.nightly import job, power
from pocketsleep.sleep import SleepReport
from pocketsleep.sleep.consolidate import Consolidation, ConsolidationReport


def run(capsys, *argv):
    from pocketsleep.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_sleep_consolidates_now_then_merges(capsys, paths, journal, tmp_path, monkeypatch):
    pytest.importorskip("mlx.core")
    from memory_support import NIGHT, day, learnable_questions
    from sleep_support import tiny_model

    from pocketsleep.cli import sleep as sleep_cli

    paths.config_file.write_text(f'model = "{tiny_model(tmp_path)}"\n')
    learnable_questions(monkeypatch)
    monkeypatch.setattr(sleep_cli, "SleepOptions", lambda: NIGHT.but(gate=True))
    for n in range(2):
        journal.log_conversation(day(n))
        # A random model does not pass the gates; the wiring is tested here (the
        # gates in test_consolidate.py).
        code, out, err = run(capsys, "sleep", "--no-merge", "--no-gate")
        assert code == 0 and "Consolidated" not in out, out  # the window is 7 nights
    assert len(journal.active_experts()) == 2

    code, out, err = run(capsys, "sleep", "--consolidate-now", "--no-gate")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("Nothing to learn")
    assert lines[1].startswith("Consolidated 2 experts into a weekly expert (expert 3) in ")
    assert lines[2].startswith("Merged 1 expert into v1 of your personal model")
    assert [(r["id"], r["level"]) for r in journal.active_experts()] == [(3, "weekly")]
    assert journal.current_version().expert_ids == (3,)

    code, out, _ = run(capsys, "sleep", "--json")
    report = json.loads(out)
    assert report["status"] == "nothing to learn"
    assert report["consolidation"] == {"runs": [], "note": None} and report["merge"] is None


@pytest.fixture
def night(monkeypatch, journal):
    """The nightly job with a fake sleep that learned, a fake merge and power on."""
    from pocketsleep.versions import merge
    from pocketsleep.versions.merge import MergeReport

    journal.log_conversation([{"role": "user", "content": "My dog is Biscuit."}])
    monkeypatch.setattr(power, "on_battery", lambda: False)
    monkeypatch.setattr(job, "run_sleep", lambda *a, **k: SleepReport(
        "succeeded", sleep_id=None, expert_id=7, conversations=[1], seconds=3.0))
    order = []

    def fake_merge(*a, **k):
        order.append("merge")
        return MergeReport("merged", version=4, experts=[9], checks={
            "max_logit_diff": 1e-5, "same_answers": 3, "questions": 3})

    monkeypatch.setattr(merge, "merge_if_needed", fake_merge)
    return order


def test_the_nightly_job_consolidates_before_the_merge(paths, journal, night, monkeypatch):
    from pocketsleep.sleep import consolidate

    def fake(paths_, config, progress=lambda *a: None, **k):
        night.append("consolidate")
        return ConsolidationReport([Consolidation("weekly", [5, 6, 7], "consolidated", 8, 9)])

    monkeypatch.setattr(consolidate, "consolidate_if_due", fake)
    outcome = job.run_nightly(paths, Config())
    assert night == ["consolidate", "merge"]
    assert outcome.outcome == "slept"
    assert outcome.detail.endswith("; weekly expert 9; v4")
    assert "consolidation: Consolidated 3 experts into a weekly expert (expert 9)" in (
        paths.nightly_log.read_text())


def test_nothing_due_leaves_the_outcome_as_it_was(paths, journal, night):
    outcome = job.run_nightly(paths, Config())  # no experts: nothing is due
    assert outcome.detail == "expert 7 from 1 conversations, 3 s; v4"


def test_a_failed_consolidation_keeps_the_night_and_still_merges(paths, journal, night,
                                                                 monkeypatch):
    from pocketsleep.sleep import consolidate

    def boom(*a, **k):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(consolidate, "consolidate_if_due", boom)
    outcome = job.run_nightly(paths, Config())
    assert outcome.outcome == "slept" and night == ["merge"]
    assert "; consolidation failed: RuntimeError: out of memory; v4" in outcome.detail
    assert "Traceback" in paths.nightly_log.read_text()
