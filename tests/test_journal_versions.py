"""The journal's record of personal-model versions: begin, switch, refuse, drop,
rollback (experts and conversations follow the version), pruning queries."""

from __future__ import annotations

import pytest

from pocketsleep.errors import JournalError


def night(journal, title: str) -> tuple[int, int]:
    """One successful sleep that learned one conversation: (expert id, conversation id)."""
    cid = journal.log_conversation([{"role": "user", "content": title}], title=title)
    sid = journal.begin_sleep()
    eid = journal.accept_expert(sid, "nightly", f"night-{sid:04d}", {}, [cid],
                                [(f"about {title}?", title)], {})
    return eid, cid


def status_of(journal, table: str, row_id: int) -> str:
    return journal.db.execute(f"SELECT status FROM {table} WHERE id = ?", [row_id]).fetchone()[0]


def test_a_version_is_built_then_switched_in_one_step(journal):
    e1, _ = night(journal, "dog")
    v1 = journal.begin_version("default", [e1])
    assert journal.version(v1).status == "ready" and journal.current_version() is None
    assert journal.version(v1).path == f"v{v1:04d}"
    journal.switch_version(v1, {"max_logit_diff": 1e-5}, 1234)
    e2, _ = night(journal, "cat")
    v2 = journal.begin_version("default", [e1, e2])
    journal.switch_version(v2, {}, 99)
    got = {v.id: (v.status, v.expert_ids) for v in journal.versions()}
    assert got == {v1: ("previous", (e1,)), v2: ("current", (e1, e2))}
    assert journal.version(v1).checks == {"max_logit_diff": 1e-5}
    assert journal.version(v1).size_bytes == 1234 and journal.version(v2).switched_at


def test_refused_and_dropped_versions_never_become_current(journal):
    e1, _ = night(journal, "dog")
    v1 = journal.begin_version("default", [e1])
    journal.refuse_version(v1, "logits differ", {"max_logit_diff": 3.0})
    assert journal.version(v1).status == "refused" and journal.version(v1).notes == "logits differ"
    with pytest.raises(JournalError):
        journal.switch_version(v1, {}, 1)
    assert journal.current_version() is None  # the failed switch changed nothing
    v2 = journal.begin_version("default", [e1])
    journal.drop_version(v2)
    assert [v.id for v in journal.versions()] == [v1]
    with pytest.raises(JournalError, match="no version v99"):
        journal.version(99)


def test_rollback_restores_the_versions_experts_and_reopens_later_conversations(journal):
    e1, c1 = night(journal, "dog")
    v1 = journal.begin_version("default", [e1])
    journal.switch_version(v1, {}, 1)
    e2, c2 = night(journal, "cat")
    v2 = journal.begin_version("default", [e1, e2])
    journal.switch_version(v2, {}, 1)
    e3, c3 = night(journal, "bird")  # slept, not merged yet

    changes = journal.rollback_to(v1)
    assert changes == {"switched_off": [e2, e3], "switched_on": [], "pending_again": [c2, c3]}
    assert [r["id"] for r in journal.active_experts()] == [e1]
    assert journal.current_version().id == v1 and journal.version(v2).status == "previous"
    assert [status_of(journal, "conversations", c) for c in (c1, c2, c3)] == [
        "consolidated", "pending", "pending"]
    assert journal.active_probes() == [("about dog?", "dog")]

    # Undo: back to v2, whose experts come back on; c3 stays pending (only e3 had it).
    changes = journal.rollback_to(v2)
    assert changes == {"switched_off": [], "switched_on": [e2], "pending_again": []}
    assert [r["id"] for r in journal.active_experts()] == [e1, e2]
    assert status_of(journal, "conversations", c2) == "consolidated"
    assert status_of(journal, "experts", e3) == "rejected"


def test_rollback_keeps_forgotten_conversations_forgotten(journal):
    e1, _ = night(journal, "dog")
    v1 = journal.begin_version("default", [e1])
    journal.switch_version(v1, {}, 1)
    e2, c2 = night(journal, "secret")
    journal.forget(c2)
    journal.rollback_to(v1)
    assert status_of(journal, "conversations", c2) == "forgotten"


def test_unneeded_experts_are_those_no_kept_version_holds(journal):
    e1, _ = night(journal, "dog")
    v1 = journal.begin_version("default", [e1])
    journal.switch_version(v1, {}, 1)
    e2, _ = night(journal, "cat")
    v2 = journal.begin_version("default", [e1, e2])
    journal.switch_version(v2, {}, 1)
    e3, _ = night(journal, "bird")
    journal.rollback_to(v1)  # e2 and e3 switched off; v2 (kept) still holds e2
    assert [r["id"] for r in journal.unneeded_experts()] == [e3]
    journal.prune_version(v2, "pruned")
    assert [r["id"] for r in journal.unneeded_experts()] == [e2, e3]
    journal.prune_expert(e2)
    assert [r["id"] for r in journal.experts("pruned")] == [e2]


def test_experts_learned_names_nights_and_conversations(journal):
    e1, c1 = night(journal, "dog")
    got = journal.experts_learned([e1])
    assert got[0]["id"] == e1 and got[0]["sleep_id"] == 1 and got[0]["status"] == "active"
    assert got[0]["conversations"] == [{"id": c1, "title": "dog", "status": "consolidated"}]
    assert journal.experts_learned([]) == []
