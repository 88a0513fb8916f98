"""Knowledge seeding, step 2: the generalized distillation objective.

    L = off-policy KL  +  λ · on-policy reverse KL  +  μ · Learning-to-Imitate

Every loss has mlx-lm's shape `(model, batch) -> (loss, ntoks)`, so the loop can
take any of them. The student is the model *without* the episode in context (its
prompts are closed-book); only tonight's expert is trainable.
"""

from __future__ import annotations

from dataclasses import dataclass

import pocketsleep.backends  # noqa: F401  (fast BLAS before mlx loads)
import mlx.core as mx
import numpy as np

from .sampling import log_softmax

NEG = -1e9  # "impossible" log-probability for padding targets
# Smallest tail mass the student is scored on (log of 0 is -inf).
TAIL_FLOOR = 1e-6


@dataclass
class Batch:
    inputs: mx.array  # [B, L] token ids fed to the student
    mask: mx.array  # [B, L] 1 where the prediction at that position is trained
    extra: dict  # loss-specific targets, aligned with inputs


def _pad(rows: list[list[int]]) -> tuple[np.ndarray, int]:
    width = max(len(r) for r in rows)
    out = np.zeros((len(rows), width), dtype=np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out, width


# -- off-policy: token-level KL(teacher || student) on teacher answers ------------------

def offpolicy_batch(items: list[tuple]) -> Batch:
    """items: (student prompt ids, answer ids incl. end token, top-k ids, top-k logprobs
    [, token weights]), the top-k rows aligned with the answer ids (row t is the
    distribution that chose answer token t). The optional weights (one per answer id,
    default 1) scale each token's term in the training loss, not in the reported KL."""
    rows = [item[0] + item[1][:-1] for item in items]
    inputs, width = _pad(rows)
    k = items[0][2].shape[1]
    ids = np.zeros((len(items), width, k), dtype=np.int32)
    lps = np.full((len(items), width, k), NEG, dtype=np.float32)
    mask = np.zeros((len(items), width), dtype=np.float32)
    weights = np.zeros((len(items), width), dtype=np.float32)
    for i, (prompt, answer, top_ids, top_lps, *rest) in enumerate(items):
        start = len(prompt) - 1  # the position whose output predicts answer[0]
        n = len(answer)
        ids[i, start : start + n] = top_ids[:n]
        lps[i, start : start + n] = top_lps[:n]
        mask[i, start : start + n] = 1
        weights[i, start : start + n] = rest[0][:n] if rest else 1
    return Batch(mx.array(inputs), mx.array(mask),
                 {"topk_ids": mx.array(ids), "topk_logprobs": mx.array(lps),
                  "weights": mx.array(weights)})


def _offpolicy_cross_entropy(model, batch: Batch) -> mx.array:
    """[B, L]: cross-entropy of the student against the teacher's top-k tokens plus
    one bucket for the rest of the vocabulary."""
    student = log_softmax(model(batch.inputs))
    picked = mx.take_along_axis(student, batch.extra["topk_ids"], axis=-1)
    teacher = mx.exp(batch.extra["topk_logprobs"])
    teacher_rest = mx.maximum(1.0 - teacher.sum(axis=-1), 0.0)
    student_rest = mx.log(mx.maximum(1.0 - mx.exp(picked).sum(axis=-1), TAIL_FLOOR))
    return -(teacher * picked).sum(axis=-1) - teacher_rest * student_rest


def offpolicy_loss(model, batch: Batch):
    """KL(teacher‖student) over the teacher's top-k tokens plus one bucket for the rest
    of the vocabulary (up to the teacher's entropy).

    The tail bucket matters: against the top-k renormalised to 1, every step pushed
    the student's mass off all other tokens, sharpening it everywhere, and the
    perplexity of ordinary text rose by 8% in a night (dev-week day 1) whatever the
    other settings."""
    per_token = _offpolicy_cross_entropy(model, batch)
    ntoks = batch.mask.sum()
    return (per_token * batch.extra["weights"]).sum() / ntoks, ntoks


def offpolicy_kl(model, batch: Batch):
    """The off-policy loss less the teacher's own entropy (over the same buckets): the
    KL itself, 0 where the student says what the teacher says. Reported, not trained
    (its gradient is the loss's)."""
    teacher_lp = batch.extra["topk_logprobs"]
    teacher = mx.exp(teacher_lp)
    rest = mx.maximum(1.0 - teacher.sum(axis=-1), 0.0)
    entropy = (-(teacher * teacher_lp).sum(axis=-1)
               - rest * mx.log(mx.maximum(rest, TAIL_FLOOR)))
    per_token = _offpolicy_cross_entropy(model, batch) - entropy
    ntoks = batch.mask.sum()
    return (per_token * batch.mask).sum() / ntoks, ntoks


# -- on-policy: reverse KL(student || teacher) on the student's own samples -------------

def onpolicy_batch(student_prompt: list[int], samples: list[list[int]],
                   teacher_logprobs: list[np.ndarray]) -> Batch:
    """teacher_logprobs[i]: [len(samples[i]), V] teacher log-probs (episode in context)
    of every vocabulary entry at each sampled position."""
    rows = [student_prompt + s[:-1] if s else student_prompt for s in samples]
    inputs, width = _pad(rows)
    vocab = teacher_logprobs[0].shape[-1]
    teacher = np.full((len(samples), width, vocab), 0.0, dtype=np.float32)
    mask = np.zeros((len(samples), width), dtype=np.float32)
    start = len(student_prompt) - 1
    for i, (s, t) in enumerate(zip(samples, teacher_logprobs)):
        teacher[i, start : start + len(s)] = t
        mask[i, start : start + len(s)] = 1
    return Batch(mx.array(inputs), mx.array(mask), {"teacher_logprobs": mx.array(teacher)})


def onpolicy_loss(model, batch: Batch):
    """Exact reverse KL over the vocabulary at each position the student sampled."""
    student = log_softmax(model(batch.inputs))
    kl = (mx.exp(student) * (student - batch.extra["teacher_logprobs"])).sum(axis=-1)
    ntoks = batch.mask.sum()
    return (kl * batch.mask).sum() / ntoks, ntoks


# -- Learning to Imitate: policy gradient with a group-relative advantage -------------

def token_f1(a: list[int], b: list[int]) -> float:
    """Bag-of-tokens F1 between two answers: the reward for imitating the teacher."""
    if not a or not b:
        return 0.0
    from collections import Counter

    common = sum((Counter(a) & Counter(b)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


def group_advantages(rewards: list[float]) -> list[float]:
    """GRPO: reward minus the group mean, over the group's standard deviation."""
    r = np.asarray(rewards, dtype=np.float64)
    std = r.std()
    if std < 1e-6:
        return [0.0] * len(rewards)
    return list((r - r.mean()) / std)


def lti_batch(student_prompt: list[int], samples: list[list[int]],
              advantages: list[float]) -> Batch:
    rows = [student_prompt + s for s in samples]
    inputs, width = _pad(rows)
    targets = np.zeros_like(inputs)
    targets[:, :-1] = inputs[:, 1:]
    mask = np.zeros(inputs.shape, dtype=np.float32)
    start = len(student_prompt) - 1
    for i, s in enumerate(samples):
        mask[i, start : start + len(s)] = 1.0 / max(len(s), 1)  # mean over each sample
    adv = np.asarray(advantages, dtype=np.float32)[:, None]
    return Batch(mx.array(inputs), mx.array(mask),
                 {"targets": mx.array(targets), "advantages": mx.array(adv)})


def lti_loss(model, batch: Batch):
    """−Σ_i A_i · mean_t log π(y_i,t): raise the likelihood of samples that agreed
    with the teacher more than their group did, lower the others."""
    student = log_softmax(model(batch.inputs))
    picked = mx.take_along_axis(student, batch.extra["targets"][..., None], axis=-1)[..., 0]
    per_sample = (picked * batch.mask).sum(axis=-1, keepdims=True)
    loss = -(batch.extra["advantages"] * per_sample).sum() / batch.inputs.shape[0]
    return loss, (batch.mask > 0).sum()
