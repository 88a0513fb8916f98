"""A night's dreaming on a tiny random model: what it stores, what each ablation
switch changes, what it replays, and that private conversations are never dreamt;
through `dream()` directly with scripted writers (fast and predictable), and once
through the real sleep job and `pocketsleep sleep --report`."""

from __future__ import annotations

import random

import numpy as np
import pytest

pytest.importorskip("mlx.core")
pytest.importorskip("gguf")

from mlx.utils import tree_flatten  # noqa: E402
from sleep_support import (  # noqa: E402
    DAY, FAST, PRIVATE, SECRET, learnable_self_study, log_day, student_and_teacher, tiny_model)

from pocketsleep.backends import mlx_lora  # noqa: E402
from pocketsleep.sleep.dreaming import night  # noqa: E402
from pocketsleep.sleep.dreaming.generate import Dream  # noqa: E402
from pocketsleep.sleep.episode import Episode  # noqa: E402
from pocketsleep.sleep.job import Basis  # noqa: E402
from pocketsleep.sleep.options import ABLATIONS  # noqa: E402
from pocketsleep.sleep.selfstudy import Teacher  # noqa: E402

OPTIONS = FAST.but(dream_candidates=6, dream_keep_top=2, dream_keep_random=1, dream_steps=3,
                   dream_trials=2, dream_replay_count=5, dream_lr=1e-3)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return student_and_teacher(tiny_model(tmp_path_factory.mktemp("tiny")), FAST)


@pytest.fixture
def io(model):
    io, _, _ = model
    saved = tree_flatten(io.model.trainable_parameters())
    yield io
    io.model.update(mlx_lora.tree_unflatten(saved))  # each test starts from the same expert


@pytest.fixture
def scripted(monkeypatch):
    """One dream per arm asked for, about the episode's first conversation."""
    def write_dreams(io, teacher, episode, arms, earlier, seed, carried=()):
        return [Dream(arm, f"Question {i} about my sister?", f"Your sister Anna, {i}.",
                      tuple(sorted({episode.conversation_ids[0], *carried})))
                for i, arm in enumerate(arms)]

    monkeypatch.setattr(night, "write_dreams", write_dreams)


def dream_tonight(paths, io, journal, examples, options=OPTIONS, cids=None):
    cids = cids or [journal.log_conversation(DAY[0], title="day")]
    episode = Episode(tuple(cids), (tuple(DAY[0]),) * len(cids), ("2026-03-02",) * len(cids))
    train = [e for e in examples if e.kind == "anchor"]
    heldout = [e for e in examples if e.kind == "recall"]
    sid = journal.begin_sleep()
    summary = night.dream(paths, io, Teacher(io, options), episode, train, heldout, options,
                          journal, Basis([], []), sid)
    return sid, cids, summary


def weights(io):
    return {k: np.array(v) for k, v in tree_flatten(io.model.trainable_parameters())}


def changed(before, after) -> bool:
    return any(not np.array_equal(before[k], after[k]) for k in before)


def test_a_night_of_dreams_trains_the_expert_and_is_kept_with_its_policy(scripted, paths, io, journal,
                                                                          model):
    before = weights(io)
    sid, [cid], summary = dream_tonight(paths, io, journal, model[2])
    assert changed(before, weights(io))  # rehearsal moved tonight's expert
    assert summary["ran"] and summary["candidates"] == 6 and summary["kept"] == 3
    assert summary["selection"] == "gradient" and summary["diversifier"] == "noise"
    assert summary["rehearsal"]["steps"] == 3 and summary["replayed"] == 0
    assert len(summary["trials"]) == 2
    rows = journal.dreams(sid)
    assert len(rows) == 6 and sum(r["selected"] for r in rows) == 3
    assert all(r["conversation_ids"] == [cid] and r["score"] > 0 for r in rows)
    # The kept ones are the two largest gradients plus one other.
    top = sorted(rows, key=lambda r: -r["score"])[:2]
    assert all(r["selected"] for r in top)
    [policy] = journal.dream_policies()
    assert policy["sleep_id"] == sid and policy["trials"] == summary["trials"]
    assert policy["probabilities"] == summary["policy_after"]


def test_no_dreaming_runs_nothing(scripted, paths, io, journal, model):
    before = weights(io)
    sid, _, summary = dream_tonight(paths, io, journal, model[2],
                                    OPTIONS.but(**ABLATIONS["sleep-no-dream"]))
    assert summary == {"ran": False}
    assert not changed(before, weights(io))
    assert journal.dreams(sid) == [] and journal.dream_policies() == []


def test_random_selection_scores_nothing(scripted, paths, io, journal, model, monkeypatch):
    monkeypatch.setattr(night, "gradient_norms", lambda *a: pytest.fail("scored"))
    sid, _, summary = dream_tonight(paths, io, journal, model[2],
                                    OPTIONS.but(**ABLATIONS["sleep-random-select"]))
    assert summary["selection"] == "random" and summary["kept"] == 3
    assert all(r["score"] is None for r in journal.dreams(sid))


def test_no_random_expert_dreams_on_the_plain_model(scripted, paths, io, journal, model, monkeypatch):
    seen = []
    monkeypatch.setattr(night.diversify, "noise_expert", lambda *a: seen.append(a))
    _, _, summary = dream_tonight(paths, io, journal, model[2],
                                  OPTIONS.but(**ABLATIONS["sleep-no-random-expert"]))
    assert summary["diversifier"] == "none" and seen == []


def test_replay_draws_the_kept_dreams_of_accepted_nights_only(scripted, paths, io, journal, model):
    kept_sid, [kept], _ = dream_tonight(paths, io, journal, model[2])
    journal.accept_expert(kept_sid, "nightly", "night-0001", {}, [kept], [], {})
    rejected_sid, [other], _ = dream_tonight(paths, io, journal, model[2])
    journal.end_sleep(rejected_sid, "rejected", {})

    replayed = []
    real = night.held_item

    def spy(io_, request, content, k):
        replayed.append(request)
        return real(io_, request, content, k)

    night.held_item = spy
    try:
        journal.begin_sleep()  # tonight: running, its own dreams are not replay
        items, ids = night.replay_items(io, journal, OPTIONS, random.Random(0), 16)
    finally:
        night.held_item = real
    kept_requests = {r["prompt"] for r in journal.dreams(kept_sid) if r["selected"]}
    assert len(items) == 3 and set(replayed) == kept_requests
    assert set(ids) == {r["id"] for r in journal.dreams(kept_sid) if r["selected"]}
    assert journal.dreams(rejected_sid) != []  # still there tonight...
    _, [tonight], summary = dream_tonight(paths, io, journal, model[2])
    assert summary["replayed"] == 3
    assert journal.dreams(rejected_sid) == []  # ...and swept by the next night
    # The night rehearsed what the replayed dreams hold (forget rebuilds it for that).
    assert summary["rehearsed_from"] == [kept, tonight]

    _, [tonight], summary = dream_tonight(paths, io, journal, model[2],
                                          OPTIONS.but(**ABLATIONS["sleep-no-replay"]))
    assert summary["replayed"] == 0 and summary["rehearsed_from"] == [tonight]


def test_replay_leaves_out_the_dreams_that_say_what_tonight_takes_back(
        paths, io, journal, model, monkeypatch):
    """sleep/updates.py: an earlier dream that says a word the user now negates
    ("not in Lisbon any more") is not rehearsed again; the others are."""
    cities = ["Lisbon", "Madrid", "Porto", "Lisbon"]

    def write_dreams(io, teacher, episode, arms, earlier, seed, carried=()):
        return [Dream(arm, f"Where does my sister live ({i})?", f"In {cities[i % 4]}.",
                      (episode.conversation_ids[0],)) for i, arm in enumerate(arms)]

    monkeypatch.setattr(night, "write_dreams", write_dreams)
    sid, [cid], _ = dream_tonight(paths, io, journal, model[2])
    journal.accept_expert(sid, "nightly", "night-0001", {}, [cid], [], {})
    journal.begin_sleep()
    pool = journal.replayable_dreams()
    lisbon = {r["id"] for r in pool if "Lisbon" in r["content"]}
    assert lisbon and len(lisbon) < len(pool)
    _, ids = night.replay_items(io, journal, OPTIONS, random.Random(0), 16, {"lisbon"})
    assert set(ids) == {r["id"] for r in pool} - lisbon
    _, ids = night.replay_items(io, journal, OPTIONS, random.Random(0), 16)
    assert set(ids) == {r["id"] for r in pool}


def test_dreams_written_wearing_an_earlier_expert_boosted_are_forgotten_with_it(
        scripted, paths, io, journal, model, monkeypatch):
    """An earlier expert's knowledge can end up in tonight's dreams: its conversations
    are their sources too, and forgetting one of them deletes them."""
    from contextlib import nullcontext

    first = journal.log_conversation([{"role": "user", "content": "My pet is n1."}])
    sid = journal.begin_sleep()
    eid = journal.accept_expert(sid, "nightly", "night-0001", {}, [first], [], {})
    row = next(r for r in journal.active_experts() if r["id"] == eid)
    monkeypatch.setattr(night.diversify, "pick",
                        lambda *a: ("expert night-0001", nullcontext(), row))
    tonight, [cid], summary = dream_tonight(paths, io, journal, model[2])
    assert summary["diversifier"] == "expert night-0001"
    assert {tuple(r["conversation_ids"]) for r in journal.dreams(tonight)} == {(first, cid)}
    journal.forget(first)
    assert journal.dreams(tonight) == []


def test_dreams_of_a_conversation_made_private_meanwhile_are_not_kept(scripted, paths, io, journal,
                                                                      model, monkeypatch):
    cid = journal.log_conversation(DAY[0], title="day")
    real = night.rehearse

    def private_meanwhile(*a, **k):
        journal.set_private(cid)
        return real(*a, **k)

    monkeypatch.setattr(night, "rehearse", private_meanwhile)
    sid, _, summary = dream_tonight(paths, io, journal, model[2], cids=[cid])
    assert summary["candidates"] == 6 and journal.dreams(sid) == []


def test_the_sleep_job_dreams_and_the_report_shows_it(paths, journal, tmp_path, monkeypatch,
                                                       capsys):
    """The real writers (their output accepted as usable: a random model writes
    junk), in the real sleep job, with a private conversation in the journal."""
    from pocketsleep.cli import main
    from pocketsleep.config import Config
    from pocketsleep.sleep import run_sleep
    from pocketsleep.sleep.dreaming import generate

    learnable_self_study(monkeypatch)
    monkeypatch.setattr(generate, "usable_request", lambda arm, text: bool(text))
    gguf = tiny_model(tmp_path)
    day = log_day(journal)
    journal.log_conversation(PRIVATE, private=True)
    options = FAST.but(dream_candidates=10, dream_steps=2, dream_trials=1)
    report = run_sleep(paths, Config(model=str(gguf)), options)
    assert report.status == "succeeded", report.reasons
    d = report.metrics["dream"]
    assert d["ran"] and d["candidates"] > 0 and "dream" in report.metrics["seconds"]
    rows = journal.dreams(report.sleep_id)
    assert len(rows) == d["candidates"]
    assert all(set(r["conversation_ids"]) <= set(day) for r in rows)
    assert not any(SECRET in r["prompt"] + r["content"] for r in rows)

    paths.config_file.write_text(f'model = "{gguf}"\n')
    assert main(["sleep", "--report"]) in (0, None)
    out = capsys.readouterr().out
    assert f"dreaming: {d['candidates']} dreams written" in out
    assert "dream policy, last 1 night(s)" in out and "update/as-of" in out
    assert main(["status"]) in (0, None)
    assert "dreaming" in capsys.readouterr().out


def test_eval_runs_every_dreaming_ablation_side_by_side():
    from pocketsleep.eval.methods import parse_methods

    names = ["sleep", "sleep-dream", "sleep-no-dream", "sleep-random-select", "sleep-no-random-expert",
             "sleep-no-replay", "sleep-dream-onehot", "sleep-dream-undo"]
    assert [m.name for m in parse_methods(",".join(names))] == names


def test_a_night_whose_dreaming_the_gate_rejects_keeps_what_seeding_learned(
        paths, journal, tmp_path, monkeypatch, capsys):
    """With dream_undo, the gate judges seeding and dreaming together; when it says
    no, it judges seeding's expert alone (its weights from before dreaming), and
    keeps that."""
    from pocketsleep.cli import main
    from pocketsleep.config import Config
    from pocketsleep.sleep import dreaming, gate, run_sleep

    from pocketsleep.sleep.dreaming import generate

    learnable_self_study(monkeypatch)
    monkeypatch.setattr(generate, "usable_request", lambda arm, text: bool(text))
    gguf = tiny_model(tmp_path)
    log_day(journal)
    seen = {}
    real_dream = dreaming.dream

    def dream_watched(paths, io, *args, **kwargs):
        seen["seeded"] = weights(io)
        summary = real_dream(paths, io, *args, **kwargs)
        seen["dreamt"] = weights(io)
        return summary

    def check(io, *args, **kwargs):
        seen.setdefault("judged", []).append(weights(io))
        first = len(seen["judged"]) == 1
        return gate.GateResult(not first, ["dreams lost a quiz answer"] if first else [], {})

    monkeypatch.setattr(dreaming, "dream", dream_watched)
    monkeypatch.setattr(gate, "check", check)
    options = FAST.but(dream_candidates=6, dream_steps=2, dream_trials=1, dream_lr=1e-2,
                       dream_undo=True)
    report = run_sleep(paths, Config(model=str(gguf)), options)
    assert report.status == "succeeded", report.reasons
    assert changed(seen["seeded"], seen["dreamt"])  # rehearsal moved the expert
    together, alone = seen["judged"]
    assert not changed(together, seen["dreamt"]) and not changed(alone, seen["seeded"])
    assert report.metrics["dream"]["undone"]["reasons"] == ["dreams lost a quiz answer"]
    # The expert written is seeding's alone, and its dreams, never learned, are not
    # replayed by later nights (though kept for forget and the report).
    name = journal.active_experts()[0]["path"]
    _, written = mlx_lora.read_expert(paths.expert_folder(name))
    as_trained = {k.replace(".new_a", ".lora_a").replace(".new_b", ".lora_b"): v
                  for k, v in alone.items()}
    assert set(written) == set(as_trained)
    assert all(np.allclose(np.array(written[k]), as_trained[k]) for k in written)
    assert journal.dreams(report.sleep_id) and journal.replayable_dreams() == []

    paths.config_file.write_text(f'model = "{gguf}"\n')
    assert main(["sleep", "--report"]) in (0, None)
    assert "dreaming undone: the gate rejected seeding and dreaming together (dreams lost" \
        in capsys.readouterr().out

    # Without the undo (the default) the same verdict rejects the night.
    seen.clear()
    log_day(journal)
    report = run_sleep(paths, Config(model=str(gguf)), options.but(dream_undo=False))
    assert report.status == "rejected" and len(seen["judged"]) == 1
    assert "undone" not in report.metrics["dream"]


class FakeGate:
    """The gate's two calls judge() makes, answering with the given verdicts."""

    def __init__(self, *verdicts):
        self.verdicts, self.weights = list(verdicts), []

    def unseen_generic(self, io, options):
        return []

    def check(self, io, *args, **kwargs):
        self.weights.append(float(np.array(io.model.weight).sum()))
        return self.verdicts.pop(0)


@pytest.mark.parametrize("case", ["passes", "no rehearsal", "no budget left", "undone"])
def test_judge_tries_seeding_alone_only_after_a_rejected_rehearsal_with_time_left(case):
    import time
    from types import SimpleNamespace

    import mlx.core as mx
    import mlx.nn as nn

    from pocketsleep.sleep import job
    from pocketsleep.sleep.gate import GateResult

    model = nn.Linear(2, 2)
    seeded = tree_flatten(model.trainable_parameters())
    model.update({"weight": model.weight + 1.0})  # what rehearsal did
    io = SimpleNamespace(model=model)
    mx.eval(model.parameters())
    rejected = GateResult(False, ["quiz lost"], {"which": "together"})
    alone = GateResult(True, [], {"which": "alone"})
    gate = FakeGate(GateResult(True, [], {}) if case == "passes" else rejected, alone)
    dream_log = {"ran": True, "rehearsal": {"steps": 0 if case == "no rehearsal" else 4}}
    deadline = (time.perf_counter() - job.GATE_RESERVE_SECONDS - 1
                if case == "no budget left" else None)
    verdict = job.judge(io, gate, [], [], Basis([], []), OPTIONS, seeded, dream_log,
                        deadline, lambda *a: None)
    before = float(np.array(dict(seeded)["weight"]).sum())
    if case == "undone":  # judged as rehearsed (2x2 weights, +1 each), then as seeded
        assert verdict is alone and gate.weights == pytest.approx([before + 4.0, before])
        assert dream_log["undone"] == {"reasons": ["quiz lost"], "gate": {"which": "together"}}
    else:
        assert len(gate.weights) == 1 and "undone" not in dream_log
        assert verdict.passed == (case == "passes")
    assert ("undo_skipped" in dream_log) == (case == "no budget left")
