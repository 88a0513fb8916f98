"""Sleep methods keep each night's gate verdict: in the JSON's `nights`, counted as
"nights kept" in the table, the reasons of a rejection listed below it."""

from __future__ import annotations

import json

import pytest

from pocketsleep.backends.fake import FakeEngine
from pocketsleep.config import Config
from pocketsleep.eval.harness import run_eval
from pocketsleep.eval.methods import METHODS, ClosedBook
from pocketsleep.eval.report import format_table, write_plot
from pocketsleep.eval.suite import parse_suite
from pocketsleep.sleep.job import SleepReport

SUITE = {
    "name": "two-days",
    "days": [
        {"date": "2026-01-01",
         "conversations": [[{"role": "user", "content": "My dog is called Biscuit."},
                            {"role": "assistant", "content": "Biscuit is a great name."}],
                           [{"role": "user", "content": "I drink green tea."}]],
         "probes": [{"question": "What is my dog called?", "answers": ["Biscuit"]}]},
        {"date": "2026-01-02",
         "conversations": [[{"role": "user", "content": "My sister Anna lives in Lisbon."},
                            {"role": "assistant", "content": "Lisbon is lovely."}]],
         "probes": [{"question": "Where does Anna live?", "answers": ["Lisbon"]}]},
    ],
    "general_probes": [{"question": "Say hello.", "answers": ["hello"]}],
    "general_text": "The river runs to the sea.",
}
PPL_REASON = "general-text perplexity rose +13.2% (limit +5%)"


def gate_metrics(drift, ppl, before, after, dream=None) -> dict:
    """The metrics a SleepReport carries, as sleep/job.py writes them."""
    return {"conversations": [1], "examples": {"train": 22, "heldout": 5}, "dream": dream,
            "distill": {"steps": 48, "fit_kl": {"learnable": [0.9, 0.7], "anchors": [0.0, 0.02]}},
            "gate_reasons": [],
            "gate": {"before": {"heldout_logprob": before, "earlier_logprob": -2.0,
                                "earlier_fact_recall": 0.4, "earlier_fact_logprobs": [-0.9]},
                     "after": {"heldout_logprob": after, "earlier_logprob": -2.1,
                               "earlier_fact_recall": 0.3, "earlier_fact_logprobs": [-1.2]},
                     "drift_kl": drift, "unseen_drift_kl": drift * 2, "ppl_change": ppl,
                     "quiz_right_before": 11, "quiz_right_after": 10},
            "seconds": {"self_study": 211.0, "distill": 394.0, "gate": 27.0}}


DREAMT = {"ran": True, "candidates": 30, "kept": 10, "replayed": 0, "diversifier": "noise",
          "rehearsal": {"steps": 12}, "trials": [{"arm": "qa", "gain": 0.1, "reward": 1.0},
                                                 {"arm": "qa", "gain": -0.1, "reward": 0.0}],
          "undone": {"reasons": [PPL_REASON]}}

SCALED_BACK = {"factor": 0.5, "passed": True, "full_reasons": [PPL_REASON]}
REPORTS = [
    SleepReport("rejected", 1, conversations=[1, 2], reasons=[PPL_REASON],
                metrics=gate_metrics(0.12, 0.132, -1.43, -1.20), seconds=632.0),
    SleepReport("succeeded", 2, 1, conversations=[1, 2, 3],
                metrics=gate_metrics(0.05, 0.021, -1.55, -1.21,
                                     DREAMT),
                seconds=600.5),
]
REPORTS[1].metrics["gate"]["scaled_back"] = SCALED_BACK


def scripted_sleep_run(monkeypatch) -> tuple[dict, list[dict]]:
    """none, then sleep with REPORTS as its nights: the result and every update."""
    reports = list(REPORTS)
    monkeypatch.setattr("pocketsleep.sleep.run_sleep", lambda *a, **k: reports.pop(0))
    monkeypatch.setattr("pocketsleep.engines.wear_experts", lambda *a: 0)
    updates = []
    result = run_eval(parse_suite(SUITE), [ClosedBook, METHODS["sleep"]],
                      engine_factory=lambda p, c: FakeEngine(), on_update=updates.append)
    return result, updates


def test_each_nights_verdict_is_kept_and_shown(monkeypatch):
    result, updates = scripted_sleep_run(monkeypatch)

    rejected, kept = result["methods"]["sleep"]["nights"]
    assert rejected == {
        "night": 1, "status": "rejected", "reasons": [PPL_REASON], "conversations": 2,
        "examples": {"train": 22, "heldout": 5}, "distill_steps": 48,
        "fit_kl": {"learnable": [0.9, 0.7], "anchors": [0.0, 0.02]},
        "drift_kl": 0.12, "unseen_drift_kl": 0.24, "ppl_change": 0.132,
        "quiz_right_before": 11, "quiz_right_after": 10,
        "heldout_logprob_before": -1.43, "heldout_logprob_after": -1.20,
        "earlier_logprob_before": -2.0, "earlier_logprob_after": -2.1,
        "earlier_fact_recall_before": 0.4, "earlier_fact_recall_after": 0.3,
        "earlier_fact_logprobs_before": [-0.9], "earlier_fact_logprobs_after": [-1.2],
        "scaled_back": None, "dream": None, "dreaming_undone": None,
        "seconds": {"self_study": 211.0, "distill": 394.0, "gate": 27.0},
        "total_seconds": 632.0}
    assert (kept["night"], kept["status"], kept["reasons"]) == (2, "succeeded", [])
    assert kept["dreaming_undone"] == [PPL_REASON]
    assert kept["scaled_back"] == SCALED_BACK
    assert kept["dream"] == {"candidates": 30, "kept": 10, "replayed": 0, "diversifier": "noise",
                             "rehearsal": {"steps": 12}, "trials_rewarded": [1, 2],
                             "undone": True}
    assert result["methods"]["none"]["nights"] == []
    # The first night's verdict is in the file before the second night starts.
    assert updates[3]["methods"]["sleep"]["nights"] == [rejected]
    json.dumps(result)  # all of it JSON-able

    table = format_table(result)
    kept_row = next(line for line in table.splitlines() if line.startswith("nights kept"))
    assert kept_row.split()[-2:] == ["-", "1/2"]
    assert "sleep    n1 rejected   -1.43 → -1.20  KL 0.120  unseen KL 0.240  quiz 10/11  ppl +13.2%  " \
           "self_study 211 s, " \
           "distill 394 s, gate 27 s" in table
    assert f"- {PPL_REASON}" in table
    assert "sleep    n2 kept       dreaming undone  -1.55 → -1.21" in table


def test_the_plot_draws_a_stopped_run_and_its_rejected_nights(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    result, updates = scripted_sleep_run(monkeypatch)
    for name, figures in (("stopped", updates[3]), ("finished", result)):
        png = write_plot(figures, tmp_path / f"{name}.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_a_real_gate_that_rejects_leaves_its_reasons_in_the_nights(tmp_path, monkeypatch):
    """The sleep job itself on a tiny model, with a gate no night can pass."""
    pytest.importorskip("mlx.core")
    pytest.importorskip("gguf")
    from sleep_support import FAST, tiny_model

    strict = FAST.but(gate=True, max_ppl_increase=-1.0)  # perplexity must fall by 100%
    monkeypatch.setattr("pocketsleep.sleep.SleepOptions", lambda seed: strict.but(seed=seed))
    result = run_eval(parse_suite(SUITE), [METHODS["sleep"]], seed=1,
                      config=Config(model=str(tiny_model(tmp_path))),
                      engine_factory=lambda p, c: FakeEngine())

    nights = result["methods"]["sleep"]["nights"]
    assert [n["status"] for n in nights] == ["rejected", "rejected"]
    # A rejected night leaves its day pending: night 2 learns both days again.
    assert [n["conversations"] for n in nights] == [2, 3]
    for night in nights:
        assert any(r.startswith("general-text perplexity rose") for r in night["reasons"])
        assert {"self_study", "distill", "gate"} <= set(night["seconds"])
        assert night["ppl_change"] is not None and night["drift_kl"] is not None
        assert night["distill_steps"] == FAST.steps and night["total_seconds"] > 0
    assert "nights kept" in format_table(result) and "0/2" in format_table(result)
