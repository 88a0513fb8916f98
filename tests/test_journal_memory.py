"""The journal's record of the memory hierarchy and of forgetting: probes that name
their conversation, consolidations (one transaction: new expert, provenance, probes
carried over, old experts retired), and what `forget` deletes and rebuilds."""

from __future__ import annotations

import pytest

from pocketsleep.errors import JournalError


def night(journal, *titles: str) -> tuple[int, list[int]]:
    """One successful night that learned a conversation per title, with one probe
    written from each: (expert id, conversation ids)."""
    cids = [journal.log_conversation([{"role": "user", "content": f"My {t} is Rex."}], title=t)
            for t in titles]
    sid = journal.begin_sleep()
    eid = journal.accept_expert(sid, "nightly", f"night-{sid:04d}", {}, cids,
                                [(f"Who is my {t}?", "Rex", c) for t, c in zip(titles, cids)],
                                {})
    return eid, cids


def status_of(journal, table: str, row_id: int) -> str:
    return journal.db.execute(f"SELECT status FROM {table} WHERE id = ?", [row_id]).fetchone()[0]


def probes(journal, expert_id: int) -> list[tuple]:
    return [(p["question"], p["answer"], p["conversation_id"])
            for p in journal.expert_probes([expert_id])]


def test_sleeps_have_a_kind_and_the_last_sleep_is_the_last_night(journal):
    night(journal, "dog")
    cid = journal.begin_sleep("consolidation")
    assert [s.kind for s in journal.sleeps()] == ["consolidation", "night"]
    assert journal.last_sleep().kind == "night"
    assert journal.last_sleep(kind=None).id == cid
    assert [s.id for s in journal.sleeps(kind="consolidation")] == [cid]


def test_probes_name_the_conversation_they_were_written_from(journal):
    eid, (dog, cat) = night(journal, "dog", "cat")
    sid = journal.begin_sleep()
    old = journal.accept_expert(sid, "nightly", "n", {}, [], [("Old style?", "yes")], {})
    assert probes(journal, eid) == [("Who is my dog?", "Rex", dog), ("Who is my cat?", "Rex", cat)]
    assert probes(journal, old) == [("Old style?", "yes", None)]
    assert journal.expert_sources([eid, old]) == [dog, cat]


def test_a_kept_night_takes_back_the_worn_probes_while_its_conversation_is_learned(journal):
    """accept_expert(taken_back=...) (m008; sleep/updates.py): the worn experts'
    probes with that question and answer are no longer held (listed, consolidated,
    rebuilt on) while the conversation that took them back is learned; a
    consolidation keeps them taken back, and forgetting that conversation brings
    them back. Tonight's own probes with the same text are new, and held."""
    eid, (dog,) = night(journal, "dog")
    sid = journal.begin_sleep()
    journal.accept_expert(sid, "nightly", "r", {}, [],
                          [("Who is my dog?", "Rex", dog, "rehearsal"),
                           ("Where does my dog sleep?", "Rex sleeps inside", dog)], {})
    assert journal.active_probes() == [("Who is my dog?", "Rex"),
                                       ("Where does my dog sleep?", "Rex sleeps inside")]
    update = journal.log_conversation([{"role": "user", "content": "My dog is not Rex."}])
    new = journal.accept_expert(journal.begin_sleep(), "nightly", "n", {}, [update],
                                [("Who is my dog?", "Rex", update)], {},
                                taken_back=[("Who is my dog?", "Rex", update)])
    held = [("Where does my dog sleep?", "Rex sleeps inside"), ("Who is my dog?", "Rex")]
    assert journal.active_probes(("heldout", "rehearsal")) == held
    assert [p["expert_id"] for p in journal.expert_probes([eid, new])] == [new]
    w = journal.accept_consolidation(journal.begin_sleep("consolidation"), "weekly", "w", {},
                                     [eid, eid + 1, new], [], {})
    assert journal.active_probes(("heldout", "rehearsal")) == held
    assert [p["expert_id"] for p in journal.expert_probes([w])] == [w, w]
    journal.forget(update)  # the take-back is forgotten: the old answers count again
    assert journal.active_probes(("heldout", "rehearsal")) == [  # night 1's, the rehearsal's
        ("Who is my dog?", "Rex"), ("Who is my dog?", "Rex"), held[0]]


def test_rehearsal_questions_are_kept_apart_from_the_probes_gates_check(journal):
    """A night's rehearsal questions (SleepOptions.rehearsal_questions) were trained
    on: later nights hold them as anchors, but only held-out probes are checked."""
    dog = journal.log_conversation([{"role": "user", "content": "My dog is Rex."}])
    sid = journal.begin_sleep()
    eid = journal.accept_expert(sid, "nightly", "n", {}, [dog], [
        ("Who is my dog?", "Rex", dog), ("Name my dog?", "Rex.", dog, "rehearsal"),
        ("What pet do I have?", "A dog", dog)], {})
    assert journal.active_probes() == [("Who is my dog?", "Rex"), ("What pet do I have?", "A dog")]
    assert journal.active_probes(("heldout", "rehearsal")) == [
        ("Who is my dog?", "Rex"), ("Name my dog?", "Rex."), ("What pet do I have?", "A dog")]
    assert [p["question"] for p in journal.expert_probes([eid])] == [
        "Who is my dog?", "What pet do I have?"]
    assert [(p["question"], p["kind"]) for p in journal.expert_probes([eid], ("rehearsal",))] \
        == [("Name my dog?", "rehearsal")]
    # Derived from the conversation all the same: forget deletes them too.
    assert len(journal.probes_about(dog)) == 3
    journal.forget(dog)
    assert journal.active_probes(("heldout", "rehearsal")) == []


def test_probe_conversations_are_those_still_learned_and_not_private(journal):
    """What an earlier probe's anchor may reread (earlier_anchor_targets): only a
    conversation an active expert learned, that the user has not made private."""
    _, (dog, cat, bird, hen) = night(journal, "dog", "cat", "bird", "hen")
    sid = journal.begin_sleep()
    journal.accept_expert(sid, "nightly", "n", {}, [], [("Old style?", "yes")], {})
    gone, _ = night(journal, "fish")
    journal.db.execute("UPDATE experts SET status = 'rejected' WHERE id = ?", [gone])
    journal.set_private(cat)
    journal.forget(bird)
    # Pending again (as after a rollback): no longer learned.
    journal.db.execute("UPDATE conversations SET status = 'pending' WHERE id = ?", [hen])
    assert journal.probe_conversations() == {("Who is my dog?", "Rex"): dog}


def test_a_consolidation_is_one_transaction(journal):
    e1, c1 = night(journal, "dog")
    e2, c2 = night(journal, "cat", "bird")
    keep, _ = night(journal, "fish")  # not consolidated: stays as it is
    sid = journal.begin_sleep("consolidation")
    w = journal.accept_consolidation(sid, "weekly", "weekly-0004", {"rank": 4}, [e1, e2],
                                     [("What pets do I have?", "a dog, a cat", None)],
                                     {"retiring": [e1, e2]})
    assert [r["id"] for r in journal.active_experts()] == [keep, w]
    assert status_of(journal, "experts", e1) == status_of(journal, "experts", e2) == "retired"
    row = journal.db.execute("SELECT level, path, sleep_id FROM experts WHERE id = ?",
                             [w]).fetchone()
    assert row == ("weekly", "weekly-0004", sid)
    assert journal.expert_sources([w]) == c1 + c2
    # The retired experts' probes are carried over (theirs are kept for a rollback).
    assert probes(journal, w) == probes(journal, e1) + probes(journal, e2) + [
        ("What pets do I have?", "a dog, a cat", None)]
    assert len(probes(journal, e1)) == 1
    assert journal.sleeps(kind="consolidation")[0].status == "succeeded"
    # The model now wears the weekly expert's probes (not the nightly ones twice) and
    # the fish night's.
    assert len(journal.active_probes()) == 3 + 1 + 1


def test_a_consolidation_of_experts_no_longer_active_changes_nothing(journal):
    e1, _ = night(journal, "dog")
    e2, _ = night(journal, "cat")
    journal.db.execute("UPDATE experts SET status = 'rejected' WHERE id = ?", [e2])
    sid = journal.begin_sleep("consolidation")
    with pytest.raises(JournalError, match="changed meanwhile"):
        journal.accept_consolidation(sid, "weekly", "w", {}, [e1, e2], [], {})
    assert [r["id"] for r in journal.active_experts()] == [e1]
    assert journal.sleeps(kind="consolidation")[0].status == "running"


def test_forget_deletes_the_probes_and_dreams_derived_from_the_conversation(journal):
    eid, (dog, cat) = night(journal, "dog", "cat")
    sid = journal.begin_sleep()
    legacy = journal.accept_expert(sid, "nightly", "n", {}, [dog], [("Unknown source?", "x")], {})
    other, _ = night(journal, "fish")
    journal.db.execute("INSERT INTO dreams (sleep_id, kind, prompt, content) VALUES"
                       " (1, 'qa', 'Who is my dog?', 'Rex')")
    about = journal.probes_about(dog)
    assert [(p["question"], p["expert_id"]) for p in about] == [
        ("Who is my dog?", eid), ("Unknown source?", legacy)]
    assert [e["id"] for e in journal.experts_trained_on(dog)] == [eid, legacy]

    journal.forget(dog)
    assert journal.probes_about(dog) == []
    assert [q for q, _, _ in probes(journal, eid)] == ["Who is my cat?"]
    assert probes(journal, other) == [("Who is my fish?", "Rex", 3)]
    assert journal.db.execute("SELECT count(*) FROM dreams").fetchone()[0] == 0
    # What learned it is still known: the weights are rebuilt from that.
    assert [e["id"] for e in journal.experts_trained_on(dog)] == [eid, legacy]


def test_replacing_an_expert_prunes_it_and_every_version_holding_it(journal):
    eid, (dog, cat) = night(journal, "dog", "cat")
    other, _ = night(journal, "fish")
    v1 = journal.begin_version("default", [eid])
    journal.switch_version(v1, {}, 1)
    v2 = journal.begin_version("default", [eid, other])
    journal.switch_version(v2, {}, 1)
    journal.forget(dog)
    sid = journal.begin_sleep("rebuild")
    new = journal.replace_expert(eid, sid, "night-0004", {}, [cat],
                                 [("Where does my cat sleep?", "on the sofa", cat)], {},
                                 why="held forgotten conversation 1")
    assert [r["id"] for r in journal.active_experts()] == [other, new]
    assert status_of(journal, "experts", eid) == "pruned"
    assert journal.expert_sources([new]) == [cat]
    assert probes(journal, new) == [("Who is my cat?", "Rex", cat),
                                    ("Where does my cat sleep?", "on the sofa", cat)]
    assert {v.id: (v.status, v.notes) for v in journal.versions()} == {
        v1: ("pruned", "held forgotten conversation 1"),
        v2: ("pruned", "held forgotten conversation 1")}
    assert journal.current_version() is None
    assert status_of(journal, "conversations", cat) == "consolidated"
    assert journal.sleeps(kind="rebuild")[0].status == "succeeded"


def test_dropping_an_expert_reopens_what_no_active_expert_holds(journal):
    eid, (dog, cat) = night(journal, "dog", "cat")
    sid = journal.begin_sleep("consolidation")
    w = journal.accept_consolidation(sid, "weekly", "w", {}, [eid], [], {})
    journal.forget(dog)
    # The retired nightly expert: pruned; its conversations are held by the weekly one.
    assert journal.drop_expert(eid, "forgotten") == []
    assert status_of(journal, "conversations", cat) == "consolidated"
    # The weekly one: cat is pending again, the forgotten conversation stays forgotten.
    assert journal.drop_expert(w, "forgotten") == [cat]
    assert status_of(journal, "conversations", cat) == "pending"
    assert status_of(journal, "conversations", dog) == "forgotten"
    assert journal.active_experts() == []


def test_an_expert_that_rehearsed_a_conversation_counts_as_trained_on_it(journal):
    """A later night that held an earlier night's probes in place (or replayed its
    dreams) was trained on their answers: forget must rebuild it too (m007)."""
    e1, (dog,) = night(journal, "dog")
    cat = journal.log_conversation([{"role": "user", "content": "My cat is Tom."}])
    sid = journal.begin_sleep()
    # What the night learned is not also recorded as rehearsed.
    e2 = journal.accept_expert(sid, "nightly", "night-0002", {}, [cat], [], {},
                               rehearsed=[dog, cat])
    assert journal.expert_sources([e2]) == [cat]
    assert rehearsed_rows(journal) == [(e2, dog)]
    assert [e["id"] for e in journal.experts_trained_on(dog, rehearsed=False)] == [e1]
    assert [e["id"] for e in journal.experts_trained_on(dog)] == [e1, e2]
    assert [e["id"] for e in journal.experts_trained_on(cat)] == [e2]
    # A consolidation is distilled from its experts: it inherits what they rehearsed.
    e3, (fish,) = night(journal, "fish")
    w = journal.accept_consolidation(journal.begin_sleep("consolidation"), "weekly", "w", {},
                                     [e2, e3], [], {})
    assert [e["id"] for e in journal.experts_trained_on(dog)] == [e1, e2, w]
    # A rebuild records what it rehearsed in turn.
    journal.forget(fish)
    new = journal.replace_expert(w, journal.begin_sleep("rebuild"), "weekly-0006", {}, [cat],
                                 [], {}, why="held forgotten conversation 3",
                                 rehearsed=[dog, fish])
    assert [e["id"] for e in journal.experts_trained_on(dog)] == [e1, e2, w, new]
    assert [e["id"] for e in journal.experts_trained_on(fish)] == [e3, w, new]


def rehearsed_rows(journal) -> list[tuple[int, int]]:
    return [tuple(r) for r in journal.db.execute(
        "SELECT expert_id, conversation_id FROM expert_rehearsed ORDER BY 1, 2").fetchall()]


def test_probe_origins_name_the_conversations_each_probe_holds(journal):
    eid, (dog, cat) = night(journal, "dog", "cat")
    sid = journal.begin_sleep()
    legacy = journal.accept_expert(sid, "nightly", "n", {}, [dog, cat], [
        ("Unknown source?", "x"), ("Name my dog?", "Rex.", dog, "rehearsal")], {})
    assert journal.probe_origins([eid, legacy]) == {
        ("Who is my dog?", "Rex"): [dog], ("Who is my cat?", "Rex"): [cat],
        ("Unknown source?", "x"): [dog, cat]}
    assert journal.probe_origins([legacy], ("rehearsal",)) == {("Name my dog?", "Rex."): [dog]}
    assert journal.probe_origins([]) == {}


def test_experts_made_before_m007_count_every_earlier_experts_conversations(tmp_path):
    """Which probes an old night held is not known: the upgrade assumes the worst."""
    from sqlite_utils import Database

    from pocketsleep.journal import Journal
    from pocketsleep.journal.migrations import MIGRATIONS, MIGRATIONS_TABLE_SQL, migrate

    path = tmp_path / "journal.db"
    db = Database(path)
    db.conn.execute("PRAGMA foreign_keys = OFF")
    before = [m for m in MIGRATIONS if m.__name__ != "m007_expert_rehearsed"]
    db.execute(MIGRATIONS_TABLE_SQL)
    for fn in before:
        fn(db)
        db.execute("INSERT INTO _migrations VALUES (?, 'then')", [fn.__name__])
    # Conversations 4 and 5 were forgotten: 4 for good (the expert that learned it was
    # rebuilt), 5 half-way (its text is gone, the expert that learned it is not yet).
    rows = [(1, "dog", "consolidated", "active"), (2, "cat", "consolidated", "active"),
            (3, "fish", "consolidated", "active"), (4, None, "forgotten", "pruned"),
            (5, None, "forgotten", "active"), (6, "bird", "consolidated", "active")]
    for i, title, status, expert in rows:
        db.execute("INSERT INTO conversations (id, started_at, updated_at, title, status)"
                   " VALUES (?, 't', 't', ?, ?)", [i, title, status])
        db.execute("INSERT INTO experts (id, created_at, level, path, status) VALUES (?, 't',"
                   " 'nightly', ?, ?)", [i, f"night-{i:04d}", expert])
        db.execute("INSERT INTO expert_sources VALUES (?, ?)", [i, i])
    db.execute("INSERT INTO expert_sources VALUES (3, 1)")  # night 3 learned dog again
    db.conn.commit()
    assert migrate(db) == ["m007_expert_rehearsed"]
    db.close()
    with Journal.open(path) as journal:
        assert [e["id"] for e in journal.experts_trained_on(1)] == [1, 2, 3, 4, 5, 6]
        assert [e["id"] for e in journal.experts_trained_on(3)] == [3, 4, 5, 6]
        assert [e["id"] for e in journal.experts_trained_on(4)] == [4]
        assert [e["id"] for e in journal.experts_trained_on(5)] == [5, 6]
        assert (3, 1) not in rehearsed_rows(journal)  # it learned it
