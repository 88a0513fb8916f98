"""`forget` reaching the weights, on a tiny random GGUF: the experts trained on a
conversation (those that learned it, and later nights' that held its probes in place)
are rebuilt without it (or dropped), the versions holding them are
deleted, the model is merged again, and its probes are no longer answered."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mlx.core")
pytest.importorskip("gguf")

from memory_support import (  # noqa: E402
    NIGHT, day, learnable_questions, scripted_teacher, soft_recall)
from sleep_support import tiny_model  # noqa: E402
from version_support import make_home  # noqa: E402

from pocketsleep.config import Config  # noqa: E402
from pocketsleep.errors import Busy  # noqa: E402
from pocketsleep.forgetting import forget_conversation  # noqa: E402
from pocketsleep.sleep import run_sleep  # noqa: E402
from pocketsleep.versions import merge_if_needed  # noqa: E402

LEARN = NIGHT.but(steps=20, learning_rate=5e-3)  # learns each fact well


def status_of(journal, table: str, row_id: int) -> str:
    return journal.db.execute(f"SELECT status FROM {table} WHERE id = ?", [row_id]).fetchone()[0]


def files_holding(home, text: bytes) -> list[str]:
    return [str(p) for p in home.rglob("*") if p.is_file() and text in p.read_bytes()]


def test_forget_rebuilds_the_expert_without_the_conversation(paths, journal, tmp_path,
                                                             monkeypatch):
    learnable_questions(monkeypatch)
    scripted_teacher(monkeypatch)
    config = Config(model=str(tiny_model(tmp_path)))
    gone = journal.log_conversation(day(1), title="pet n1")
    kept = journal.log_conversation(day(2), title="pet n2")
    # Learns both; every statement question is stored as a probe (and learned
    # through the recall requests about each conversation).
    first = run_sleep(paths, config, LEARN.but(heldout_fraction=1.0))
    journal.log_conversation(day(3))
    second = run_sleep(paths, config, LEARN)
    assert merge_if_needed(paths, config).status == "merged"
    about = journal.probes_about(gone)
    assert about and all(p["conversation_id"] == gone for p in about)
    # The second night learned only day 3, but held the first night's probes in place
    # (earlier anchors): it was trained on their answers, so it counts as well.
    assert gone not in journal.expert_sources([second.expert_id])
    assert [e["id"] for e in journal.experts_trained_on(gone)] == [first.expert_id,
                                                                    second.expert_id]
    assert files_holding(paths.home, b"pet n1")  # the journal holds it (text, probes)
    others = [(p["question"], p["answer"]) for p in journal.expert_probes([first.expert_id])
              if p["conversation_id"] == kept]
    others_before = soft_recall(paths, config, others)
    # The same questions about pets and cars never mentioned (n4 ... n9): what
    # forgetting should bring the forgotten answers down to. The days kept share
    # their wording, so it is not near zero, and it differs from number to number.
    never = [(p["question"].replace("1", d), p["answer"].replace("1", d))
             for d in NEVER_SAID for p in about]
    never_before = never_said(soft_recall(paths, config, never))
    phases = []

    report = forget_conversation(paths, config, gone, lambda p, s, t: phases.append(p), LEARN)

    old, old2 = f"night-{first.sleep_id:04d}", f"night-{second.sleep_id:04d}"
    [(was, new), (was2, new2)] = report.rebuilt
    assert (was, was2) == (old, old2) and len({old, old2, new, new2}) == 4
    assert report.dropped == []
    assert report.messages_removed == 3 and report.probes_removed == len(about)
    assert report.merge.status == "merged" and report.versions_pruned == [1]
    assert any(p.startswith(f"rebuilding {old}: ") for p in phases)
    # The journal: the old experts pruned, their replacements learned only what is
    # left, and rehearsed nothing of it.
    assert status_of(journal, "experts", first.expert_id) == "pruned"
    assert status_of(journal, "experts", second.expert_id) == "pruned"
    active = journal.active_experts()
    assert [r["path"] for r in active] == [new, new2]
    rebuilt = active[0]
    assert rebuilt["level"] == "nightly"
    assert journal.expert_sources([rebuilt["id"]]) == [kept]
    assert journal.expert_sources([active[1]["id"]]) == [journal.expert_sources(
        [second.expert_id])[0]]
    assert {p["conversation_id"] for p in journal.expert_probes([rebuilt["id"]])} == {kept}
    assert {e["status"] for e in journal.experts_trained_on(gone)} == {"pruned"}
    rebuilds = journal.sleeps(kind="rebuild")[::-1]
    assert [r.status for r in rebuilds] == ["succeeded"] * 2
    assert [(r.metrics["rebuilds"], r.metrics["forgotten"]) for r in rebuilds] == [
        (old, gone), (old2, gone)]
    assert [journal.expert_made_by(r.id)["path"] for r in rebuilds] == [new, new2]
    assert status_of(journal, "conversations", kept) == "consolidated"
    assert journal.current_version().expert_ids == tuple(sorted(r["id"] for r in active))
    # Nothing on disk holds it: not the journal (text, probes), not an expert's or a
    # version's files (the old experts' folders and v1 are deleted).
    assert not (paths.experts / old).exists() and not (paths.experts / old2).exists()
    assert not (paths.versions / "v0001").exists()
    assert files_holding(paths.home, b"pet n1") == []
    assert files_holding(paths.home, b"pet n2")  # what remains is still there
    # The check: the probes about it were asked before and after.
    c = report.check
    print(f"\nsoft recall of the {c['probes']} forgotten probes: {c['soft_before']:.3g} -> "
          f"{c['soft_after']:.3g}")
    others_after = soft_recall(paths, config, others)
    print(f"soft recall of the {len(others)} probes of the conversation kept: "
          f"{np.mean(others_before):.3g} -> {np.mean(others_after):.3g}")
    never_after = never_said(soft_recall(paths, config, never))
    print("soft recall of the same probes about things never said (n4 ... n9): "
          + ", ".join(f"{b:.2g} -> {a:.2g}" for b, a in zip(never_before, never_after)))
    # Learned, its answers were likelier than those about any number never said;
    # forgotten, they are about as likely as the likeliest of those (measured: 0.078
    # against 0.002-0.068 before, 0.056 against 0.002-0.053 after).
    assert c["probes"] == len(about) and c["recalled_after"] == 0
    assert c["soft_before"] > max(never_before)
    assert c["soft_after"] < min(c["soft_before"], 1.25 * max(never_after))
    # The rebuild learned again what it had to keep.
    assert np.mean(others_after) > np.mean(others_before) / 2
    lines = report.summary().splitlines()
    assert lines[0] == (f"Forgot conversation {gone}: text removed (3 messages deleted, "
                        f"{len(about)} stored probe{'s' * (len(about) != 1)}); expert {old} "
                        f"rebuilt without it ({new}); expert {old2} rebuilt without it "
                        f"({new2}); version v1 deleted; personal model v2.")
    assert lines[1].startswith(f"Checked {len(about)} stored question")


NEVER_SAID = "456789"


def never_said(recalls: list[float]) -> list[float]:
    """Soft recalls of the probes about each number never said, averaged per number."""
    return [float(np.mean(r)) for r in np.array_split(recalls, len(NEVER_SAID))]


@pytest.fixture
def home(paths, tmp_path):
    return make_home(paths, tmp_path)


def test_an_expert_with_nothing_else_to_learn_is_deleted(home, journal):
    e1 = home.night(journal, "dog", seed=1, probes=[("What is my dog called?", "Rex")])
    e2 = home.night(journal, "cat", seed=2)
    merge_if_needed(home.paths, home.config)
    [dog] = journal.expert_sources([e1])

    report = forget_conversation(home.paths, home.config, dog)

    assert report.rebuilt == [] and report.dropped == [
        ("night-0001", "nothing else was learned in it")]
    assert [r["id"] for r in journal.active_experts()] == [e2]
    assert not (home.paths.experts / "night-0001").exists()
    assert report.check["probes"] == 1 and report.merge.status == "merged"
    assert journal.current_version().expert_ids == (e2,)
    assert "expert night-0001 deleted (nothing else was learned in it)" in report.summary()


def test_a_rejected_rebuild_is_recorded_with_what_it_rebuilt(home, journal, monkeypatch):
    from pocketsleep.sleep import job

    def rejected(paths, config, options, journal_, episode, sleep_id, *rest):
        metrics = {"conversations": list(episode.conversation_ids)}
        journal_.end_sleep(sleep_id, "rejected", metrics, error="generic answers drifted")
        return job.SleepReport("rejected", sleep_id, reasons=["generic answers drifted"],
                               metrics=metrics)

    monkeypatch.setattr(job, "learn_episode", rejected)
    dog, cat = (journal.log_conversation([{"role": "user", "content": f"My {t} is Rex."}])
                for t in ("dog", "cat"))
    home.write_expert("night-0001", seed=1)
    e1 = journal.accept_expert(journal.begin_sleep(), "nightly", "night-0001", {}, [dog, cat],
                               [], {})

    report = forget_conversation(home.paths, home.config, dog)

    assert report.dropped == [("night-0001", "its rebuild was rejected: generic answers "
                                             "drifted")]
    assert report.pending_again == [cat] and status_of(journal, "experts", e1) == "pruned"
    [rebuild] = journal.sleeps(kind="rebuild")
    assert (rebuild.status, rebuild.error) == ("rejected", "generic answers drifted")
    assert rebuild.metrics == {"conversations": [cat], "rebuilds": "night-0001",
                               "forgotten": dog}


def test_a_retired_expert_that_learned_it_is_deleted_too(home, journal):
    e1 = home.night(journal, "dog", seed=1)
    [dog] = journal.expert_sources([e1])
    home.write_expert("weekly-0002", seed=5)
    sid = journal.begin_sleep("consolidation")
    weekly = journal.accept_consolidation(sid, "weekly", "weekly-0002", {}, [e1], [], {})

    report = forget_conversation(home.paths, home.config, dog)

    assert sorted(report.dropped) == [("night-0001", "retired; it held forgotten conversation 1"),
                                      ("weekly-0002", "nothing else was learned in it")]
    assert status_of(journal, "experts", e1) == status_of(journal, "experts", weekly) == "pruned"
    assert list(home.paths.experts.iterdir()) == []
    assert report.merge.status == "nothing to merge"
    assert "personal model = the base model again" in report.summary()


def test_a_conversation_never_learned_is_only_deleted(paths, journal):
    cid = journal.log_conversation(day(1))
    report = forget_conversation(paths, Config(model="/nowhere.gguf"), cid)
    assert report.messages_removed == 3 and not report.touched_weights
    assert report.summary() == (f"Forgot conversation {cid}: text removed (3 messages "
                                "deleted); no expert had learned it.")


def test_while_a_sleep_runs_the_text_goes_and_forget_again_finishes(home, journal):
    from pocketsleep.sleep.job import sleep_lock

    e1 = home.night(journal, "dog", seed=1)
    [dog] = journal.expert_sources([e1])
    with sleep_lock(home.paths), pytest.raises(Busy) as e:
        forget_conversation(home.paths, home.config, dog)
    assert str(e.value) == (f"conversation {dog}'s text is removed, but not yet what was "
                            f"learned from it: a sleep is running. Run `pocketsleep forget "
                            f"{dog}` again to finish")
    assert journal.conversation(dog).status == "forgotten"
    assert [r["id"] for r in journal.active_experts()] == [e1]

    again = forget_conversation(home.paths, home.config, dog)
    assert again.messages_removed == 0 and again.dropped
    assert journal.active_experts() == []


def test_the_command_line_says_what_it_will_do_and_what_it_did(capsys, home, journal,
                                                               monkeypatch):
    import io

    from pocketsleep.cli import main

    e1 = home.night(journal, "dog", seed=1, probes=[("What is my dog called?", "Rex")])
    [dog] = journal.expert_sources([e1])
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert main(["forget", str(dog)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"Forget conversation {dog} (1 message)? Expert night-0001 was "
                          "trained on it and will be rebuilt without it (minutes).")
    assert journal.conversation(dog).status == "consolidated"

    assert main(["forget", str(dog), "--yes"]) == 0
    out, _ = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == (f"Forgot conversation {dog}: text removed (1 message deleted, 1 stored "
                        "probe); expert night-0001 deleted (nothing else was learned in it); "
                        "personal model = the base model again.")
    assert lines[1].startswith("Checked 1 stored question about it: answered before ")
    assert main(["forget", str(dog), "--yes"]) == 0
    assert capsys.readouterr().out == f"Conversation {dog} is already forgotten.\n"


def test_a_version_deleted_by_forget_cannot_be_rolled_back_to(home, journal):
    from pocketsleep.errors import InputError
    from pocketsleep.versions import rollback

    e1 = home.night(journal, "dog", seed=1)
    merge_if_needed(home.paths, home.config)
    home.night(journal, "cat", seed=2)
    merge_if_needed(home.paths, home.config)
    [dog] = journal.expert_sources([e1])
    forget_conversation(home.paths, home.config, dog)
    with pytest.raises(InputError, match=f"v1 was deleted: it held forgotten conversation {dog}$"):
        rollback(home.paths, home.config, 1)
