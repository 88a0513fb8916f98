"""What the sleep job said about each night, as the evaluation keeps it.

A sleep method's recall only makes sense next to its gate: a night that learned
nothing may have been rejected (and left its day pending for the next night), or
kept with nothing useful in it. So every night's SleepReport is kept in the JSON
as one flat entry of `nights`, and the report counts the nights kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..sleep.job import SleepReport


def night_verdict(report: SleepReport) -> dict:
    """One night's entry of `nights`: status, why, the gate's figures, and the
    seconds each phase took (whatever phases the report timed)."""
    metrics = report.metrics or {}
    gate = metrics.get("gate") or {}
    before, after = gate.get("before") or {}, gate.get("after") or {}
    return {
        "status": report.status,
        "reasons": list(report.reasons),
        "conversations": len(report.conversations),
        "examples": metrics.get("examples"),
        "distill_steps": (metrics.get("distill") or {}).get("steps"),
        "fit_kl": (metrics.get("distill") or {}).get("fit_kl"),
        "drift_kl": gate.get("drift_kl"),
        "unseen_drift_kl": gate.get("unseen_drift_kl"),
        "ppl_change": gate.get("ppl_change"),
        "quiz_right_before": gate.get("quiz_right_before"),
        "quiz_right_after": gate.get("quiz_right_after"),
        "heldout_logprob_before": before.get("heldout_logprob"),
        "heldout_logprob_after": after.get("heldout_logprob"),
        "earlier_logprob_before": before.get("earlier_logprob"),
        "earlier_logprob_after": after.get("earlier_logprob"),
        "earlier_fact_recall_before": before.get("earlier_fact_recall"),
        "earlier_fact_recall_after": after.get("earlier_fact_recall"),
        "earlier_fact_logprobs_before": before.get("earlier_fact_logprobs"),
        "earlier_fact_logprobs_after": after.get("earlier_fact_logprobs"),
        # Tonight's expert judged again at a fraction of its strength after the gate
        # rejected it (SleepOptions.scale_back): the factor, and whether it passed.
        "scaled_back": gate.get("scaled_back"),
        "dream": dream_summary(metrics.get("dream")),
        # The gate's reasons for rejecting seeding and dreaming together, when it then
        # judged seeding's expert alone (sleep/job.py, judge).
        "dreaming_undone": ((metrics.get("dream") or {}).get("undone") or {}).get("reasons"),
        "seconds": dict(metrics.get("seconds") or {}),
        "total_seconds": report.seconds,
    }


def dream_summary(dream: dict | None) -> dict | None:
    """What the night's dreaming did, in brief (the eval's home, and the journal that
    holds all of it, is deleted after the run)."""
    if not dream or not dream.get("ran"):
        return None
    keys = ("candidates", "kept", "replayed", "diversifier", "rehearsal", "seconds")
    out = {k: dream[k] for k in keys if k in dream}
    trials = dream.get("trials") or []
    out["trials_rewarded"] = [sum(t["reward"] > 0 for t in trials), len(trials)]
    out["undone"] = "undone" in dream  # its rehearsal is not in the expert judged
    return out


def nights_kept(nights: list[dict]) -> tuple[int, int]:
    """(nights whose expert was kept, nights with a verdict)."""
    return sum(n["status"] == "succeeded" for n in nights), len(nights)

