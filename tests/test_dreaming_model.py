"""Dreaming's parts on a tiny random model: what is switched on while dreaming is
switched off again, selection keeps the dreams with the largest gradients,
rehearsal lowers their loss, trial updates are undone and rewarded when probes
improve, and the writers' output becomes dreams the way it should."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("mlx.core")
pytest.importorskip("gguf")

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from sleep_support import DAY, FAST, student_and_teacher, tiny_model  # noqa: E402

from pocketsleep import prompts  # noqa: E402
from pocketsleep.backends import mlx_lora  # noqa: E402
from pocketsleep.sleep import objective  # noqa: E402
from pocketsleep.sleep.dreaming import diversify, generate, rehearse, select, trials  # noqa: E402
from pocketsleep.sleep.episode import Episode  # noqa: E402

OPTIONS = FAST.but(dream_lr=1e-2, dream_steps=20)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return student_and_teacher(tiny_model(tmp_path_factory.mktemp("tiny")), FAST)


def logits(io, text="Who is my sister?"):
    return np.array(io.model(mx.array(io.chat_ids(prompts.closed_book(text)))[None]))


def weights(io):
    return {k: np.array(v) for k, v in tree_flatten(io.model.trainable_parameters())}


def sft_mean(io, items) -> float:
    return float(np.mean([select.sft_loss(io.model, objective.offpolicy_batch([i])).item()
                          for i in items]))


def items_of(io, pairs, k=FAST.top_k):
    return [select.sft_item(io, q, a, k) for q, a in pairs]


def test_noise_is_on_while_dreaming_and_off_afterwards(setup):
    io, _, _ = setup
    before = logits(io)
    with diversify.noise_expert(io.model, rank=2, size=0.1, seed=1):
        noisy = logits(io)
    assert np.abs(noisy - before).max() > 1e-3  # it does something...
    assert np.abs(noisy - before).max() < np.abs(before).max()  # ...but not everything
    assert np.array_equal(logits(io), before)  # and is gone afterwards


def test_a_boosted_earlier_expert_is_on_while_dreaming_and_off_afterwards(setup, tmp_path):
    io, _, _ = setup
    saved = {k: v for k, v in tree_flatten(io.model.trainable_parameters())}
    io.model.update(mlx_lora.tree_unflatten(
        [(k, mx.ones_like(v) * 0.05 if k.endswith("new_b") else v) for k, v in saved.items()]))
    mlx_lora.save_trainable_expert(io.model, tmp_path / "night-0001",
                                   {"lora_parameters": {"scale": FAST.scale}})
    io.model.update(mlx_lora.tree_unflatten(list(saved.items())))
    mlx_lora.attach(io.model, tmp_path / "night-0001")  # the model wears it tonight
    try:
        worn = logits(io)
        with diversify.boosted_expert(io.model, tmp_path / "night-0001", 1.0):
            boosted = logits(io)
        assert np.abs(boosted - worn).max() > 1e-3
        assert np.array_equal(logits(io), worn)
    finally:
        for _, m in io.model.named_modules():
            if isinstance(m, mlx_lora.ExpertStack):
                m.experts.clear()


def test_no_random_expert_switches_nothing_on(setup):
    io, _, _ = setup
    name, _, boosted = diversify.pick(io.model, [{"path": "night-0001"}], lambda p: p,
                                      FAST.but(dream_random_expert=False), random.Random(0))
    assert (name, boosted) == ("none", None)
    name, _, boosted = diversify.pick(io.model, [], lambda p: p, FAST, random.Random(0))
    assert (name, boosted) == ("noise", None)  # the first night: no earlier expert


def test_selection_keeps_the_dreams_with_the_largest_gradients(setup):
    io, _, _ = setup
    fitted = items_of(io, [("Where does my sister live?", "Your sister Anna lives in Lisbon.")])
    fresh = items_of(io, [("What is my dog called?", "Your dog is called Biscuit."),
                          ("When do we meet?", "Every Sunday at the old harbour.")])
    saved = tree_flatten(io.model.trainable_parameters())
    try:
        rehearse.rehearse(io.model, fitted, [], OPTIONS)  # the expert now fits the first
        norms = select.gradient_norms(io, fitted + fresh)
        assert norms[0] < min(norms[1:])
        assert select.choose(norms, keep_top=2, keep_random=0, rng=random.Random(0)) == [1, 2]
        # m random ones come from the rest, never twice the same.
        assert select.choose(norms, 1, 1, random.Random(0)) in ([0, 1], [0, 2], [1, 2])
        assert len(set(select.choose(norms, 1, 5, random.Random(0)))) == 3
    finally:
        io.model.update(mlx_lora.tree_unflatten(saved))


def test_a_dream_item_is_the_sft_loss_on_its_answer(setup):
    io, _, _ = setup
    [item] = items_of(io, [("Who is my sister?", "Anna.")])
    prompt, answer, ids, lps = item
    assert answer[-1] == io.end_token and list(ids[:, 0]) == answer
    batch = objective.offpolicy_batch([item])
    lp = objective.log_softmax(io.model(batch.inputs))[0, len(prompt) - 1:len(prompt) - 1 + len(answer)]
    ce = -float(mx.take_along_axis(lp, mx.array(answer)[:, None], axis=-1).mean().item())
    assert select.sft_loss(io.model, batch).item() == pytest.approx(ce, rel=1e-4)


def test_rehearsal_lowers_the_loss_of_the_kept_dreams_with_anchors_mixed_in(setup):
    io, _, examples = setup
    dreams = items_of(io, [("Who is my sister?", "Your sister is Anna, she lives in Lisbon."),
                           ("What is my dog called?", "Your dog is called Biscuit.")])
    anchors = [(io.chat_ids(e.student_messages), e.answer.answer_ids, e.answer.topk_ids,
                e.answer.topk_logprobs) for e in examples if e.kind == "anchor"]
    saved = tree_flatten(io.model.trainable_parameters())
    try:
        before = sft_mean(io, dreams)
        log = rehearse.rehearse(io.model, dreams, anchors, OPTIONS.but(dream_steps=8))
        assert log.steps == 8 and len(log.losses) == 8
        assert sft_mean(io, dreams) < before - 0.1
    finally:
        io.model.update(mlx_lora.tree_unflatten(saved))


def test_rehearsal_stops_at_the_time_limit(setup):
    io, _, _ = setup
    dreams = items_of(io, [("Who is my sister?", "Anna.")])
    log = rehearse.rehearse(io.model, dreams, [], OPTIONS, stop_at=0.0)
    assert log.steps == 0 and log.stopped_by_budget


def test_a_trial_is_undone_and_rewarded_when_the_probes_improve(setup):
    io, _, examples = setup
    recall = [e for e in examples if e.kind == "recall"]
    probes = trials.probe_items(io, recall)
    assert len(probes) == 2
    # Rehearsing a probe's own answer makes the probes more likely: reward 1.
    q, a = recall[0].question, io.decode(recall[0].answer.tokens)
    same = items_of(io, [(q, a)])[0]
    before = weights(io)
    [result] = trials.run_trials(io.model, [("qa/direct", same)], probes, lr=1e-3)
    assert result["arm"] == "qa/direct" and result["gain"] > 0 and result["reward"] == 1.0
    after = weights(io)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert trials.run_trials(io.model, [("qa/direct", same)], [], lr=1e-2) == []


def test_requests_related_probes_and_dates():
    assert generate.usable_request("qa/direct", "Where does my sister live?")
    assert not generate.usable_request("qa/direct", "Tell me about my sister.")
    assert generate.usable_request("paraphrase/topic", "Tell me about my sister.")
    assert not generate.usable_request("qa/direct", "Statement: My dog?")
    assert not generate.usable_request("qa/direct", "")
    earlier = [("What is my job?", (1,)), ("What kind of diet do I follow?", (2,))]
    assert generate.related_probe("I switched my diet: I'm pescatarian now.", earlier) == \
        ("What kind of diet do I follow?", (2,))
    assert generate.related_probe("I love green tea.", earlier) is None
    assert generate.dated("As of 2026-03-05, ", "Your move is to Leeds.") == \
        "As of 2026-03-05, your move is to Leeds."
    assert generate.dated("As of 2026-03-05, ", "Leeds.") == "As of 2026-03-05, Leeds."


def test_written_dreams_keep_their_conversation_and_updates_are_dated(setup, monkeypatch):
    """The writers on a random model write junk; accept any text to see the plumbing."""
    io, teacher, _ = setup
    monkeypatch.setattr(generate, "usable_request", lambda arm, text: bool(text))
    monkeypatch.setattr(generate.selfstudy, "usable_answer", lambda *a, **k: True)
    episode = Episode((7, 9), (tuple(DAY[0]), tuple(DAY[1])), ("2026-03-02", "2026-03-03"))
    earlier = [("Where does my sister live?", (3,))]
    arms = ["update/as-of", "qa/direct", "update/as-of", "scenario/situation"] * 2
    dreams = generate.write_dreams(io, teacher, episode, arms, earlier, seed=0,
                                   carried=(5,))
    assert dreams, "nothing written"
    for d in dreams:
        # Its own conversation, and the boosted expert's (carried) among its sources.
        assert 5 in d.conversation_ids and len({7, 9} & set(d.conversation_ids)) == 1
        assert d.content
        if d.kind == "update":
            date = "2026-03-02" if 7 in d.conversation_ids else "2026-03-03"
            assert d.content.startswith(f"As of {date}, ")
    # The statement about Anna in Lisbon is asked the earlier probe about the sister,
    # and the probe's conversation is a source of that dream.
    quoting = [d for d in dreams if d.request == "Where does my sister live?"]
    assert quoting and all(d.kind == "update" and d.conversation_ids == (3, 5, 7)
                           for d in quoting)
    # Each dream carries its soft targets: the teacher's tokens for its text, with a
    # top-k distribution per token; a dated update's are its dated text, teacher-forced.
    for d in dreams:
        a = d.answer
        assert a is not None and a.topk_ids.shape == (len(a.answer_ids), FAST.top_k)
        assert io.decode(a.tokens).strip() == d.content
        assert np.all(a.topk_logprobs <= 1e-6) and np.all(np.exp(a.topk_logprobs).sum(-1) <= 1 + 1e-4)
        chosen = [t in row for t, row in zip(a.answer_ids, a.topk_ids)]
        if d.kind != "update":  # the teacher's own choices are in its top-k
            assert all(chosen)


def test_a_soft_dream_item_keeps_the_teachers_distribution(setup):
    """soft_item trains toward the teacher's top-k (not one-hot): its loss is the
    off-policy KL, lower for the teacher's own distribution than for one-hot text;
    held_item's targets are the model's own distribution before tonight."""
    io, teacher, _ = setup
    [answer] = teacher.answer_many([prompts.closed_book("Who is my sister?")], [0.0], seed=0)
    soft = select.soft_item(io, "Who is my sister?", answer)
    assert soft[1] == answer.answer_ids and soft[2] is answer.topk_ids
    text = io.decode(answer.tokens)
    held = select.held_item(io, "Who is my sister?", text, FAST.top_k)
    one_hot = select.sft_item(io, "Who is my sister?", text, FAST.top_k)
    # The untrained expert is zero: the model *is* the pre-sleep model, so holding
    # it where it is costs only the tail's rounding, and far less than one-hot.
    held_loss = select.sft_loss(io.model, objective.offpolicy_batch([held])).item()
    one_hot_loss = select.sft_loss(io.model, objective.offpolicy_batch([one_hot])).item()
    entropy = float(-(np.exp(held[3]) * held[3]).sum(-1).mean())
    assert held_loss == pytest.approx(entropy, abs=0.05) and held_loss < one_hot_loss
