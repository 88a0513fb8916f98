"""The distillation loop on a tiny random GGUF: its schedule of objective terms, the
budget, and that only tonight's expert moves."""

from __future__ import annotations

import pytest

mx = pytest.importorskip("mlx.core")
pytest.importorskip("gguf")
from mlx.utils import tree_flatten  # noqa: E402
from sleep_support import DAY, FAST, student_and_teacher, tiny_model  # noqa: E402

from pocketsleep.backends import mlx_lora  # noqa: E402
from pocketsleep.sleep import distill as distill_module  # noqa: E402
from pocketsleep.sleep.distill import DistillLog, distill  # noqa: E402


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def setup(gguf):
    return student_and_teacher(gguf)


def frozen(model) -> dict:
    return {k: v for k, v in tree_flatten(model.parameters()) if "new_" not in k}


def test_the_terms_follow_their_schedule_and_only_the_expert_moves(setup):
    io, teacher, train = setup
    before = frozen(io.model)
    new_b = {k: v for k, v in tree_flatten(io.model.trainable_parameters()) if "new_b" in k}
    assert new_b and all(mx.abs(v).max().item() == 0 for v in new_b.values())
    phases = []
    options = FAST.but(steps=4, on_policy_every=2, lti_every=3)
    log = distill(io, teacher, train, options,
                  progress=lambda p, s, t: phases.append((p, s, t)))
    assert log.steps == 4 and not log.stopped_by_budget and log.seconds > 0
    assert phases == [("distilling", s, 4) for s in range(4)]
    assert len(log.losses["off_policy"]) == 4
    assert len(log.losses["on_policy"]) == 2  # steps 0 and 2
    assert len(log.losses.get("lti", [])) <= 2  # steps 0 and 3, when the group disagrees
    assert all(v >= 0 for v in log.losses["off_policy"] + log.losses["on_policy"])
    after = frozen(io.model)
    assert before.keys() == after.keys()
    assert all(mx.array_equal(before[k], after[k]) for k in before)
    moved = {k: v for k, v in tree_flatten(io.model.trainable_parameters()) if "new_b" in k}
    assert any(mx.abs(v).max().item() > 0 for v in moved.values())


def test_the_on_policy_teacher_is_the_pre_sleep_model(setup, monkeypatch):
    io, teacher, train = setup
    scales = []
    real = distill_module.teacher_logprobs

    def spy(*a, **k):
        scales.extend(m.new_scale for _, m in io.model.named_modules()
                      if isinstance(m, mlx_lora.ExpertStack) and m.has_new)
        return real(*a, **k)

    monkeypatch.setattr(distill_module, "teacher_logprobs", spy)
    distill(io, teacher, train, FAST.but(steps=1, lti=False))
    assert scales and set(scales) == {0.0}
    # ...and the expert is switched on again afterwards.
    assert {m.new_scale for _, m in io.model.named_modules()
            if isinstance(m, mlx_lora.ExpertStack) and m.has_new} == {FAST.scale}


def test_the_log_says_how_far_the_night_fit_its_answers_and_moved_its_anchors(setup):
    io, teacher, train = setup
    # (At 1e-2 the same steps overshoot: the learnable KL doubles, as faster rates
    # did to the embedded model's nights.)
    log = distill(io, teacher, train, FAST.but(steps=6, learning_rate=1e-3, on_policy=False,
                                               lti=False))
    (learn_before, learn_after), (anchor_before, anchor_after) = (
        log.fit["learnable"], log.fit["anchors"])
    # Learnable: the teacher saw the day, the student did not; training closes the gap.
    assert learn_before > 0.05 and learn_after < learn_before / 2
    # Anchors are answered by the student itself before the night: nothing to learn.
    # Here (a teacher = the student, no context) they are scored against the model
    # before training, so they can only drift away from 0.
    assert abs(anchor_before) < 1e-4 and anchor_after >= anchor_before
    assert log.summary()["fit_kl"] == {"learnable": [learn_before, learn_after],
                                       "anchors": [anchor_before, anchor_after]}


def test_anchors_alone_are_only_distilled_off_policy(setup):
    io, teacher, train = setup
    anchors = [e for e in train if e.kind == "anchor"]
    log = distill(io, teacher, anchors, FAST.but(steps=2))
    assert set(log.losses) == {"off_policy"} and log.steps == 2


def test_no_terms_or_a_spent_budget_train_nothing(setup):
    io, teacher, train = setup
    log = distill(io, teacher, train, FAST.but(off_policy=False, on_policy=False, lti=False))
    assert log.steps == 0 and log.losses == {}
    import time

    log = distill(io, teacher, train, FAST, deadline=time.perf_counter() - 1)
    assert log.steps == 0 and log.stopped_by_budget
    assert all(mx.abs(v).max().item() == 0
               for k, v in tree_flatten(io.model.trainable_parameters()) if "new_b" in k)


def test_the_transcript_term_trains_on_the_day_as_it_was_said(setup):
    from pocketsleep.sleep import transcript

    io, teacher, train = setup
    said = transcript.episode_transcripts(io.tokenizer, DAY)
    assert len(said) == 2
    batch = transcript.collate(said)

    def loss() -> float:
        return transcript.transcript_loss(io.model, *batch)[0].item()

    before = loss()
    options = FAST.but(steps=6, on_policy=False, lti=False, learning_rate=1e-2,
                       transcript_weight=1.0, transcript_every=2)
    log = distill(io, teacher, train, options, transcripts=said)
    assert len(log.losses["transcript"]) == 3  # steps 0, 2 and 4
    assert len(log.losses["off_policy"]) == 6
    assert log.losses["transcript"][0] == pytest.approx(before, rel=1e-4)
    # The expert has learned the day's own words.
    assert loss() < before - 0.1


def test_without_a_weight_or_transcripts_there_is_no_transcript_term(setup):
    from pocketsleep.sleep import transcript

    io, teacher, train = setup
    said = transcript.episode_transcripts(io.tokenizer, DAY)
    for options, given in [(FAST.but(steps=2), said),
                           (FAST.but(steps=2, transcript_weight=1.0), [])]:
        log = distill(io, teacher, train, options, transcripts=given)
        assert "transcript" not in log.losses and log.steps == 2


def test_distill_log_summary():
    log = DistillLog(steps=8, seconds=1.234)
    for v in (4.0, 2.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5):
        log.add("off_policy", v)
    log.add("lti", 0.25)
    s = log.summary()
    assert s["steps"] == 8 and s["seconds"] == 1.2 and s["stopped_by_budget"] is False
    assert s["loss_first_quarter"] == {"off_policy": 3.0, "lti": 0.25}
    assert s["loss_last_quarter"] == {"off_policy": 0.5, "lti": 0.25}
    short = DistillLog()
    short.add("off_policy", 2.0)
    short.add("off_policy", 1.0)
    assert short.summary()["loss_first_quarter"] == {"off_policy": 2.0}
    assert short.summary()["loss_last_quarter"] == {"off_policy": 1.0}


class _Ids:
    """Just enough of ModelIO for batching: a prompt's ids are its question's length."""

    def chat_ids(self, messages):
        return [len(messages[-1]["content"])]


def _examples(kind: str, n: int):
    import numpy as np

    from pocketsleep import prompts
    from pocketsleep.sleep.sampling import Generated
    from pocketsleep.sleep.selfstudy import Example

    return [Example(kind, f"{kind} {i}?", prompts.closed_book(f"{kind} {i}?"),
                    Generated([i], None, np.zeros((1, 2), np.int32), np.zeros((1, 2), np.float32)))
            for i in range(n)]


@pytest.mark.parametrize("share, batch, expected_anchors", [
    (0.25, 4, 1), (0.5, 4, 2), (0.1, 4, 1), (0.0, 4, 0)])
def test_every_off_policy_batch_holds_the_anchor_share(share, batch, expected_anchors):
    import random

    train = _examples("statement", 7) + _examples("anchor", 3)
    batches = distill_module.OffPolicyBatches(_Ids(), train, FAST.but(
        batch_size=batch, anchor_share=share), random.Random(0))
    anchor_len = len("anchor 0?")
    seen = []
    for _ in range(6):
        chunk = batches.next()
        assert len(chunk) == batch
        assert sum(item[0] == [anchor_len] for item in chunk) == expected_anchors
        seen += [item[1][0] for item in chunk if item[0] != [anchor_len]]
    # The day's examples are cycled through in full before any repeats.
    assert sorted(seen[:7]) == list(range(7))


def test_batches_fall_back_to_what_there_is():
    import random

    only_anchors = distill_module.OffPolicyBatches(
        _Ids(), _examples("anchor", 2), FAST.but(batch_size=4), random.Random(0))
    assert len(only_anchors.next()) == 4
    no_anchors = distill_module.OffPolicyBatches(
        _Ids(), _examples("recall", 3), FAST.but(batch_size=4), random.Random(0))
    assert len(no_anchors.next()) == 4
    assert not distill_module.OffPolicyBatches(_Ids(), [], FAST, random.Random(0))


def _earlier(n: int):
    """Anchors that are earlier nights' probes (their questions are 'earlier i?')."""
    from dataclasses import replace

    return [replace(e, kind="anchor", earlier=True) for e in _examples("earlier", n)]


def test_earlier_anchor_slots_replay_earlier_probes_in_every_batch():
    import random

    earlier_len, anchor_len = len("earlier 0?"), len("anchor 0?")
    train = _examples("statement", 7) + _examples("anchor", 3)
    train += _earlier(2)
    batches = distill_module.OffPolicyBatches(_Ids(), train, FAST.but(
        batch_size=4, anchor_share=0.5, earlier_anchor_slots=1), random.Random(0))
    replayed = []
    for _ in range(4):
        chunk = batches.next()
        assert [item[0] for item in chunk].count([anchor_len]) == 1
        replayed += [item[1][0] for item in chunk if item[0] == [earlier_len]]
    assert sorted(replayed) == [0, 0, 1, 1]  # each earlier probe in every other batch
    # With no generic anchors the earlier probes take every anchor place.
    alone = distill_module.OffPolicyBatches(
        _Ids(), _examples("statement", 7) + _earlier(2),
        FAST.but(batch_size=4, anchor_share=0.5, earlier_anchor_slots=1), random.Random(0))
    assert [item[0] for item in alone.next()].count([earlier_len]) == 2


def test_without_earlier_anchor_slots_earlier_probes_are_drawn_as_any_anchor():
    """0 (the default): the batches are exactly those of anchors with no mark."""
    import random
    from dataclasses import replace

    train = _examples("statement", 7) + _examples("anchor", 3)
    marked = train + _earlier(2)
    unmarked = [replace(e, earlier=False) for e in marked]
    a = distill_module.OffPolicyBatches(_Ids(), marked, FAST, random.Random(3))
    b = distill_module.OffPolicyBatches(_Ids(), unmarked, FAST, random.Random(3))
    for _ in range(5):
        assert [(x[0], x[1]) for x in a.next()] == [(x[0], x[1]) for x in b.next()]


def test_earlier_anchor_slots_cannot_be_negative():
    with pytest.raises(ValueError, match="earlier_anchor_slots"):
        FAST.but(earlier_anchor_slots=-1)


def test_earlier_probes_become_anchors_scored_by_the_pre_sleep_model(setup):
    """Their targets are the model's own distribution over the stored answer with
    tonight's expert off, so distilling them holds earlier nights' answers in place."""
    import numpy as np

    from pocketsleep import prompts
    from pocketsleep.sleep.sampling import log_softmax
    from pocketsleep.sleep.selfstudy import earlier_anchors

    io, teacher, train = setup
    distill(io, teacher, train, FAST.but(steps=2, learning_rate=1e-2))  # the expert moves
    earlier = [("What is my dog called?", "Biscuit, a beagle."), ("Empty?", "  "),
               ("Where does Anna live?", "In Lisbon.")]
    anchors = earlier_anchors(io, earlier, FAST.but(earlier_anchors=1))
    assert [(e.kind, e.question) for e in anchors] == [("anchor", "Where does Anna live?")]
    assert anchors[0].earlier  # OffPolicyBatches can give these their own places
    a = anchors[0]
    assert a.answer.tokens == io.text_ids("In Lisbon.") and a.answer.end_token is None
    prompt = io.chat_ids(prompts.closed_book(a.question))
    with mlx_lora.without_trainable_expert(io.model):
        lp = np.array(log_softmax(io.model(mx.array(prompt + a.answer.tokens[:-1])[None])[0,
                                                                   len(prompt) - 1:]))
    on = np.array(log_softmax(io.model(mx.array(prompt + a.answer.tokens[:-1])[None])[0,
                                                                 len(prompt) - 1:]))
    assert not np.allclose(on, lp, atol=1e-4)  # tonight's expert would score it otherwise
    best = np.argsort(-lp, axis=-1)[:, :FAST.top_k]
    assert (np.sort(a.answer.topk_ids, -1) == np.sort(best, -1)).all()
    assert np.allclose(np.sort(a.answer.topk_logprobs, -1),
                       np.sort(np.take_along_axis(lp, best, -1), -1), atol=1e-5)
    assert earlier_anchors(io, earlier, FAST.but(earlier_anchors=0)) == []


def test_earlier_anchors_can_reread_the_conversation_a_probe_came_from(setup):
    """earlier_anchor_targets="conversation": a probe whose conversation is known is
    scored by the teacher reading it (the student still asked closed-book); one
    without stays closed-book; by default no conversation is read."""
    import numpy as np

    from pocketsleep import prompts
    from pocketsleep.sleep.sampling import log_softmax
    from pocketsleep.sleep.selfstudy import earlier_anchors

    io, teacher, _ = setup
    turns = [{"role": "system", "content": "You are a helpful assistant."},
             {"role": "user", "content": "My dog is a beagle called Biscuit."},
             {"role": "assistant", "content": "What a lovely name!"}]
    dog, anna = ("What is my dog called?", "Biscuit."), ("Where does Anna live?", "In Lisbon.")
    options = FAST.but(earlier_anchor_targets="conversation")
    read, closed = earlier_anchors(io, [dog, anna], options, teacher, {dog: turns})
    assert read.teacher_messages == prompts.teacher_view(turns[1:], dog[0])
    assert read.student_messages == prompts.closed_book(dog[0]) and read.earlier
    assert closed.teacher_messages == prompts.closed_book(anna[0])

    def best(messages):
        prompt = io.chat_ids(messages)
        with mlx_lora.without_trainable_expert(io.model):
            lp = log_softmax(io.model(mx.array(prompt + read.answer.tokens[:-1])[None])[0,
                                                                   len(prompt) - 1:])
        return np.sort(np.argsort(-np.array(lp), axis=-1)[:, :FAST.top_k], -1)

    assert read.answer.tokens == io.text_ids(dog[1])
    assert (np.sort(read.answer.topk_ids, -1) == best(read.teacher_messages)).all()
    assert not (best(read.teacher_messages) == best(prompts.closed_book(dog[0]))).all()
    [plain] = earlier_anchors(io, [dog], FAST, teacher, {dog: turns})
    assert plain.teacher_messages == prompts.closed_book(dog[0])


def test_earlier_anchor_targets_must_be_one_it_knows():
    with pytest.raises(ValueError, match="earlier_anchor_targets"):
        FAST.but(earlier_anchor_targets="dream")


def test_a_forced_answer_start_is_taught_to_the_closed_book_student(setup):
    """SleepOptions.answer_start: the teacher answers after the forced words, and the
    student, trained on those answers, begins its own closed-book answer with them."""
    from pocketsleep import prompts
    from pocketsleep.sleep.sampling import generate, generate_batch
    from pocketsleep.sleep.selfstudy import Example

    io, teacher, _ = setup
    question = "Where does my sister live?"
    view = prompts.teacher_view(DAY[0], question)
    start = io.text_ids("You told me")
    [answer] = teacher.answer_many([view], [0.0], seed=0, starts=[start])
    # The teacher's own words after the start, its top-k kept; the start one-hot.
    [after] = generate_batch(io.model, [io.chat_ids(view) + start], io.eos_ids,
                             FAST.max_answer_tokens, [0.0], top_k=FAST.top_k)
    assert answer.tokens == start + after.tokens
    assert (answer.topk_ids[len(start):] == after.topk_ids).all()
    assert (answer.topk_ids[:len(start), 0] == start).all()
    assert (answer.topk_logprobs[:len(start), 0] == 0).all()

    def says() -> list[int]:
        prompt = io.chat_ids(prompts.closed_book(question))
        return generate(io.model, prompt, io.eos_ids, len(start)).tokens

    assert says() != start  # a random model does not say it of itself
    options = FAST.but(steps=40, learning_rate=3e-3, on_policy=False, lti=False,
                       anchor_share=0)
    distill(io, teacher, [Example("statement", question, view, answer, DAY[0][0]["content"])],
            options)
    assert says() == start
