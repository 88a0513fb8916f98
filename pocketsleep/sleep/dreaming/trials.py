"""Dreaming, the reward of the dream generator's RL: trial updates on single dreams.

A trial takes a few SFT steps on one dream from where tonight's expert is, measures
the held-out self-probes (self-study questions never trained on, answered closed-
book: the teacher's answers' mean log-probability), and puts the expert back. The
reward is 1 when the probes became more likely, else 0 (the paper's "a dream earns
reward when a downstream metric improves").
"""

from __future__ import annotations

import pocketsleep.backends  # noqa: F401  (fast BLAS before mlx loads)
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from ...backends.mlx_lora import restore_trainable, trainable_snapshot
from .. import objective
from .select import sft_loss

TRIAL_STEPS = 3
# A trial is only a few steps: larger ones than rehearsal's let its effect on the
# probes stand out from float noise (a judgement, not tuned).
TRIAL_LR_FACTOR = 3.0
# Fewer probes than this measure little; more cost a forward pass each trial.
MAX_PROBES = 8
# A gain must beat float noise to count.
MIN_GAIN = 1e-4


def probe_items(io, heldout) -> list[tuple]:
    """The held-out self-study questions with the teacher's answers, as items."""
    return [(io.chat_ids(e.student_messages), e.answer.answer_ids, e.answer.topk_ids,
             e.answer.topk_logprobs)
            for e in heldout if e.kind != "anchor" and e.answer.answer_ids][:MAX_PROBES]


def probe_logprob(model, items: list[tuple]) -> float:
    """Mean per-token log-probability of the items' answer tokens, in one batch."""
    one_hot = []
    for prompt, answer, ids, lps in items:
        ids, lps = ids.copy(), lps.copy()
        ids[:, 0], lps[:, 0], lps[:, 1:] = answer, 0.0, objective.NEG
        one_hot.append((prompt, answer, ids, lps))
    loss, _ = objective.offpolicy_loss(model, objective.offpolicy_batch(one_hot))
    return -float(loss.item())


def trial_gain(model, dream_item: tuple, probes: list[tuple], lr: float,
               before: float) -> float:
    """How much the probes' log-prob rises after TRIAL_STEPS steps on one dream; the
    trainable weights are restored afterwards."""
    saved = trainable_snapshot(model)
    optimizer = optim.Adam(learning_rate=lr)
    grad_of = nn.value_and_grad(model, sft_loss)
    batch = objective.offpolicy_batch([dream_item])
    try:
        for _ in range(TRIAL_STEPS):
            _, grads = grad_of(model, batch)
            optimizer.update(model, grads)
            mx.eval(model.trainable_parameters())
        return probe_logprob(model, probes) - before
    finally:
        restore_trainable(model, saved)


def run_trials(model, trials: list[tuple[str, tuple]], probes: list[tuple],
               lr: float) -> list[dict]:
    """(arm, dream item) trials -> [{arm, gain, reward}], at `lr` × TRIAL_LR_FACTOR."""
    if not probes:
        return []
    lr = lr * TRIAL_LR_FACTOR
    before = probe_logprob(model, probes)
    out = []
    for arm, item in trials:
        gain = trial_gain(model, item, probes, lr, before)
        out.append({"arm": arm, "gain": round(gain, 5), "reward": float(gain > MIN_GAIN)})
    return out
