"""Context-contrasted targets (sleep/contrast.py, SleepOptions.context_contrast)."""

from __future__ import annotations

import numpy as np
import pytest

from pocketsleep.sleep.contrast import contrasted
from pocketsleep.sleep.objective import NEG
from pocketsleep.sleep.options import SleepOptions

LOG = np.log


def test_a_token_the_context_raised_gains_and_one_said_anyway_loses_the_mass_kept():
    # Token 0: the day made it likely (0.5 against 0.01 closed-book). Token 1: what the
    # model says anyway (0.3 against 0.5). Token 2: as likely either way. Token 3:
    # implausible (0.001), though the day raised it 10,000-fold.
    teacher = LOG(np.array([[0.5, 0.3, 0.1, 0.001]], np.float32))
    closed = LOG(np.array([[0.01, 0.5, 0.1, 1e-7]], np.float32))
    out = np.exp(contrasted(teacher, closed, 0.5))[0]
    before = np.exp(teacher)[0]
    assert out[0] > before[0] + 0.2 and out[1] < before[1] / 3
    assert out.sum() == pytest.approx(before.sum(), rel=1e-5)  # the tail keeps its mass
    # The implausible token is not contrasted: it keeps its odds against the token
    # that was as likely either way, where its ratio alone would have lifted it.
    assert out[3] / out[2] == pytest.approx(before[3] / before[2], rel=1e-4)


def test_no_contrast_and_forced_starts_leave_targets_as_they_are():
    teacher = LOG(np.array([[0.6, 0.2, 0.1], [0.5, 0.4, 0.05]], np.float32))
    closed = LOG(np.array([[0.1, 0.6, 0.2], [0.3, 0.3, 0.3]], np.float32))
    np.testing.assert_allclose(contrasted(teacher, closed, 0.0), teacher, atol=1e-6)
    # A forced start's row: one certain token, the others impossible.
    forced = np.array([[0.0, NEG, NEG]], np.float32)
    np.testing.assert_array_equal(contrasted(forced, closed[:1], 2.0), forced)


def test_a_negative_contrast_is_refused():
    with pytest.raises(ValueError, match="context_contrast"):
        SleepOptions(context_contrast=-0.5)


def test_the_nights_statement_targets_are_contrasted_against_the_model_without_the_day(
        tmp_path, monkeypatch):
    """On a tiny GGUF: the same answers, their targets moved by the contrast with the
    closed-book model (the mass of each row kept), and exactly `contrasted` of the
    teacher's own targets and the closed-book log-probs."""
    from sleep_support import DAY, FAST, learnable_self_study, student_and_teacher, tiny_model

    from pocketsleep.backends.mlx_lora import without_trainable_expert
    from pocketsleep.sleep.episode import Episode
    from pocketsleep.sleep.selfstudy import answer_logprobs, episode_examples

    learnable_self_study(monkeypatch)
    io, teacher, _ = student_and_teacher(tiny_model(tmp_path))
    episode = Episode((1, 2), tuple(tuple(c) for c in DAY), ("2026-03-02",) * 2)
    plain = episode_examples(io, teacher, episode, FAST, seed=0)
    sharp = episode_examples(io, teacher, episode, FAST.but(context_contrast=1.0), seed=0)
    assert [e.answer.answer_ids for e in sharp] == [e.answer.answer_ids for e in plain]
    assert {e.kind for e in sharp} >= {"statement", "recall"}
    for p, s in zip(plain, sharp):
        np.testing.assert_array_equal(s.answer.topk_ids, p.answer.topk_ids)
        with without_trainable_expert(io.model):
            closed = np.array(answer_logprobs(io, p.student_messages, p.answer.answer_ids))
        expected = contrasted(p.answer.topk_logprobs,
                              np.take_along_axis(closed, p.answer.topk_ids, axis=-1), 1.0)
        np.testing.assert_allclose(s.answer.topk_logprobs, expected, atol=1e-4)
        assert not np.allclose(s.answer.topk_logprobs, p.answer.topk_logprobs, atol=1e-3)
        np.testing.assert_allclose(np.exp(s.answer.topk_logprobs).sum(axis=1),
                                   np.exp(p.answer.topk_logprobs).sum(axis=1), rtol=1e-4)
