"""Consolidations and rebuilds, as `sleep --report` and `status` show them.

Besides the nights, two other runs train an expert and are recorded as sleeps
(migration m005): a consolidation (nightly experts retired into one weekly expert,
weeklies into the long-term one) and a rebuild (an expert learned again without a
conversation the user forgot, pocketsleep/forgetting.py). Each is told here in a
line or three: what it retired or rebuilt into what, and the gate's verdict.
"""

from __future__ import annotations

from ..journal import Journal, Sleep

KINDS = ("consolidation", "rebuild")
RECENT_LIMIT = 10  # runs shown after a night: a forget can rebuild several experts


def since_last_night(journal: Journal) -> list[Sleep]:
    """The consolidations and rebuilds since the last night began (those at the end
    of that night, and those of a forget since), oldest first."""
    night = journal.last_sleep()
    runs = [s for s in journal.sleeps() if s.kind in KINDS and (night is None or s.id > night.id)]
    return runs[:RECENT_LIMIT][::-1]


def describe(journal: Journal, run: Sleep) -> list[str]:
    """A run's report: a heading, what it did, the gate's verdict."""
    lines = [f"{run.kind.capitalize()} #{run.id}: {run.status}, {run.started_at} → "
             f"{run.ended_at or '…'}", "  " + what_it_did(journal, run)]
    verdict = gate_verdict(run)
    if verdict:
        lines.append(f"  gate: {verdict}")
    if run.error and run.status != "rejected":  # a rejection's reasons are the verdict
        lines.append(f"  why: {run.error}")
    return lines


def what_it_did(journal: Journal, run: Sleep) -> str:
    if run.kind == "consolidation":
        return _consolidation(journal, run)
    return _rebuild(journal, run)


def _consolidation(journal: Journal, run: Sleep) -> str:
    m = run.metrics
    retiring = journal.experts_by_id(m.get("retiring", []))
    names = ", ".join(e["path"] for e in retiring) or "experts"
    into = {"longterm": "long-term"}.get(m.get("into"), m.get("into") or "slower")
    made = journal.expert_made_by(run.id)
    if made is not None:
        return f"{names} retired into {into} expert {made['path']}"
    if run.status == "running":
        return f"consolidating {names} into a {into} expert"
    return f"{names} not consolidated into a {into} expert: they stay as they were"


def _rebuild(journal: Journal, run: Sleep) -> str:
    m = run.metrics
    old = m.get("rebuilds", "an expert")
    after = (f"after forgetting conversation {m['forgotten']}" if "forgotten" in m
             else "after a forget")
    made = journal.expert_made_by(run.id)
    if made is not None:
        return f"{after}: {old} rebuilt without it as {made['path']}"
    if run.status == "running":
        return f"{after}: rebuilding {old} without it"
    if run.status == "rejected":
        return (f"{after}: {old} could not be rebuilt without it, so it was deleted and its "
                "other conversations wait for the next sleep")
    again = f"`pocketsleep forget {m['forgotten']}`" if "forgotten" in m else "forget"
    return f"{after}: rebuilding {old} stopped ({run.status}); {again} again finishes it"


def gate_verdict(run: Sleep) -> str | None:
    """'passed' with the gate's figures, or 'rejected' with its reasons."""
    g = run.metrics.get("gate")
    if run.status == "rejected":
        return "rejected: " + (run.error or "; ".join(run.metrics.get("gate_reasons", [])))
    if run.status != "succeeded" or not g:
        return None
    figures = []
    kept = g.get("before", {}).get("kept")
    if kept is not None:  # a consolidation: what the retiring experts recalled
        after = g.get("after", {}).get("kept", {})
        figures.append(f"their {g.get('probes', 0)} probes recalled {kept.get('recalled')} → "
                       f"{after.get('recalled')}, soft recall {_num(kept.get('soft_recall'))} "
                       f"→ {_num(after.get('soft_recall'))}")
    else:
        figures.append(f"held-out log-prob {_num(g.get('before', {}).get('heldout_logprob'))} "
                       f"→ {_num(g.get('after', {}).get('heldout_logprob'))}")
    figures.append(f"drift KL {_num(g.get('drift_kl'))}")
    figures.append(f"perplexity change {_num(g.get('ppl_change'))}")
    return "passed; " + "; ".join(figures)


def as_json(journal: Journal, run: Sleep) -> dict:
    made = journal.expert_made_by(run.id)
    return {**run.__dict__, "summary": what_it_did(journal, run),
            "expert": None if made is None else {"id": made["id"], "path": made["path"],
                                                  "level": made["level"]}}


def _num(x) -> str:
    return "?" if x is None else f"{x:.3g}" if isinstance(x, float) else str(x)
