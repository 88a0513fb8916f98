"""Dreams in the journal (m006): linked to their conversations, replayed only from
nights that were kept, swept when nothing may use them, deleted by `forget`; and
the dream policy kept night after night."""

from __future__ import annotations

import random

from pocketsleep.sleep.dreaming.policy import ARMS, DreamPolicy


def dream(cid: int, text: str, selected: bool = True) -> dict:
    return {"kind": "qa", "template": "qa/direct", "prompt": f"Who is my {text}?",
            "content": f"Your {text} is Rex.", "score": 1.0, "selected": selected,
            "conversation_ids": [cid]}


def a_night(journal, title: str, accept: bool = True, selected: bool = True) -> tuple[int, int]:
    """A night that learned one conversation and dreamt about it: (sleep id, conversation)."""
    cid = journal.log_conversation([{"role": "user", "content": f"My {title} is Rex."}],
                                   title=title)
    sid = journal.begin_sleep()
    journal.add_dreams(sid, [dream(cid, title, selected)])
    if accept:
        journal.accept_expert(sid, "nightly", f"night-{sid:04d}", {}, [cid], [], {})
    else:
        journal.end_sleep(sid, "rejected", {}, error="gate said no")
    return sid, cid


def replayed(journal) -> list[str]:
    return [r["prompt"] for r in journal.replayable_dreams()]


def test_dreams_are_stored_with_their_conversations(journal):
    sid, cid = a_night(journal, "dog")
    [row] = journal.dreams(sid)
    assert row["conversation_ids"] == [cid] and row["template"] == "qa/direct"
    assert row["selected"] == 1 and row["created_at"]


def test_only_kept_dreams_of_kept_nights_about_learned_conversations_are_replayed(journal):
    a_night(journal, "dog")
    a_night(journal, "cat", accept=False)  # rejected night
    a_night(journal, "fish", selected=False)  # a candidate not kept
    _, bird = a_night(journal, "bird")
    _, horse = a_night(journal, "horse")
    running = journal.begin_sleep()  # tonight's own dreams are not replay
    journal.add_dreams(running, [dream(bird, "parrot")])
    assert replayed(journal) == ["Who is my dog?", "Who is my bird?", "Who is my horse?"]

    journal.set_private(bird)  # made private later: never replayed again
    journal.db.execute("UPDATE conversations SET status = 'pending' WHERE id = ?", [horse])
    assert replayed(journal) == ["Who is my dog?"]  # horse: pending again (rollback)


def test_sweep_deletes_dreams_of_unkept_nights_and_of_private_conversations(journal):
    a_night(journal, "dog")
    rejected, _ = a_night(journal, "cat", accept=False)
    _, bird = a_night(journal, "bird")
    journal.set_private(bird)
    running = journal.begin_sleep()
    journal.add_dreams(running, [dream(1, "dog")])
    assert journal.sweep_dreams() == 2
    assert journal.dreams(rejected) == []
    left = journal.db.execute("SELECT prompt FROM dreams ORDER BY id").fetchall()
    assert [r[0] for r in left] == ["Who is my dog?", "Who is my dog?"]  # kept + running
    assert journal.db.execute(  # links went with their dreams
        "SELECT count(*) FROM dream_sources WHERE dream_id NOT IN (SELECT id FROM dreams)"
    ).fetchone()[0] == 0


def test_forget_deletes_the_dreams_written_from_the_conversation(journal):
    kept, dog = a_night(journal, "dog")
    rejected, cat = a_night(journal, "cat", accept=False)  # no expert links it to cat
    both = journal.begin_sleep()
    journal.add_dreams(both, [{**dream(dog, "pets"), "conversation_ids": [dog, cat]},
                              dream(dog, "dog again")])
    journal.forget(cat)
    assert journal.dreams(rejected) == []
    assert [d["prompt"] for d in journal.dreams(both)] == ["Who is my dog again?"]
    assert [d["prompt"] for d in journal.dreams(kept)] == ["Who is my dog?"]
    journal.forget(dog)
    assert journal.db.execute("SELECT count(*) FROM dreams").fetchone()[0] == 0
    assert journal.db.execute("SELECT count(*) FROM dream_sources").fetchone()[0] == 0


def test_the_policy_is_kept_night_after_night_and_read_back(journal):
    assert DreamPolicy.from_journal(journal) == DreamPolicy.uniform()
    policy = DreamPolicy.uniform()
    for reward_arm in (ARMS[0], ARMS[0]):
        sid = journal.begin_sleep()
        policy = policy.update([(reward_arm, 1.0), (ARMS[1], 0.0)], lr=0.5)
        journal.record_dream_policy(sid, policy.preferences, policy.rounded(),
                                    [{"arm": reward_arm, "reward": 1.0}])
    history = journal.dream_policies()
    assert len(history) == 2 and history[0]["id"] > history[1]["id"]  # newest first
    assert history[0]["probabilities"][ARMS[0]] > history[1]["probabilities"][ARMS[0]]
    assert DreamPolicy.from_journal(journal) == policy


def test_a_stored_policy_missing_a_new_writer_starts_it_at_zero(journal):
    sid = journal.begin_sleep()
    journal.record_dream_policy(sid, {ARMS[0]: 1.0, "gone/writer": 2.0}, {}, [])
    policy = DreamPolicy.from_journal(journal)
    assert set(policy.preferences) == set(ARMS)
    assert policy.preferences[ARMS[0]] == 1.0 and policy.preferences[ARMS[1]] == 0.0


def test_reinforce_moves_probability_toward_the_arm_whose_trials_improved_probes():
    policy = DreamPolicy.uniform()
    good, bad = "scenario/situation", "qa/direct"
    after = policy.update([(good, 1.0), (bad, 0.0), (bad, 0.0), (good, 1.0)], lr=0.5)
    p0, p1 = policy.probabilities(), after.probabilities()
    assert p1[good] > p0[good] and p1[bad] < p0[bad]
    assert abs(sum(p1.values()) - 1) < 1e-9
    # Equal rewards carry no signal; no trials change nothing.
    assert policy.update([(good, 1.0), (bad, 1.0)], lr=0.5) == policy
    assert policy.update([], lr=0.5) == policy
    # Many nights of the same news saturate, never starve the others to zero.
    for _ in range(200):
        after = after.update([(good, 1.0), (bad, 0.0)], lr=2.0)
    assert max(after.preferences.values()) <= 3.0
    assert min(after.probabilities().values()) > 1e-3


def test_candidates_are_allocated_by_the_policy():
    policy = DreamPolicy({a: (2.0 if a == "update/as-of" else 0.0) for a in ARMS})
    arms = policy.allocate(2000, random.Random(0))
    share = arms.count("update/as-of") / len(arms)
    assert abs(share - policy.probabilities()["update/as-of"]) < 0.03
