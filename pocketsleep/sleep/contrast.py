"""Context-contrasted targets: what reading the day adds, amplified.

A teacher answer's target at each token is the teacher's top-k distribution with the
episode in context. Much of it is what the model says anyway, closed-book: the
hedges, the phrasing, a guess where it does not know ("I'm sorry, but as a personal
assistant..."). Context-aware decoding (Shi et al., 2023, "Trusting Your Evidence:
Hallucinate Less with Context-aware Decoding") scores a token by how much the
context raised it:

    score = (1 + α) · log p(token | context, question) − α · log p(token | question)

Here it reshapes the stored targets, not the generation: at each answer token, over
the teacher's top-k, a token the day made likelier gains mass and one the model
would say without the day loses it (`SleepOptions.context_contrast` = α). Only the
plausible tokens (at least `PLAUSIBLE` of the most likely one's probability) are
contrasted: a token the teacher gives 0.001 that the closed-book model gives 1e-7
has a large ratio and no business being learned. The top-k's total mass is kept, so
the tail bucket the student is also scored on does not move.

The closed-book side is the teacher without the context (its experts as it wears
them, tonight's expert off): the student as it starts the night.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .objective import NEG
from .options import SleepOptions

if TYPE_CHECKING:
    from .selfstudy import Example, ModelIO, Teacher

# Tokens below this share of the position's most likely one keep their target as it is.
PLAUSIBLE = 0.1


def contrasted(teacher_lp: np.ndarray, closed_lp: np.ndarray, alpha: float) -> np.ndarray:
    """Top-k log-probs [n, k] reshaped by how much the context raised each token
    (`closed_lp`: the same tokens' log-probs closed-book); same total mass per row."""
    possible = teacher_lp > NEG / 2  # not a forced start's other tokens
    best = np.where(possible, teacher_lp, -np.inf).max(axis=1, keepdims=True)
    plausible = possible & (teacher_lp >= best + np.log(PLAUSIBLE))
    score = np.where(plausible, teacher_lp + alpha * (teacher_lp - closed_lp), teacher_lp)
    out = np.where(possible, score, teacher_lp)
    # Renormalise the possible tokens to the mass the teacher gave its top-k.
    mass = _logsumexp(np.where(possible, teacher_lp, -np.inf))
    now = _logsumexp(np.where(possible, out, -np.inf))
    shift = np.where(np.isfinite(now), mass - now, 0.0)
    return np.where(possible, out + shift, teacher_lp).astype(np.float32)


def _logsumexp(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=1, keepdims=True)
    safe = np.where(np.isfinite(top), top, 0.0)
    return safe + np.log(np.exp(x - safe).sum(axis=1, keepdims=True))


def contrasted_examples(io: "ModelIO", teacher: "Teacher", options: SleepOptions,
                        examples: list["Example"]) -> list["Example"]:
    """The statement and recall answers with context-contrasted targets (anchors have
    no context to contrast); unchanged when `options.context_contrast` is 0."""
    if options.context_contrast <= 0:
        return examples
    from ..backends.mlx_lora import without_trainable_expert
    from .selfstudy import answer_logprobs

    out = []
    with without_trainable_expert(io.model):
        for e in examples:
            if e.kind == "anchor":
                out.append(e)
                continue
            a = e.answer
            closed = np.array(answer_logprobs(teacher.io, e.student_messages, a.answer_ids))
            closed_topk = np.take_along_axis(closed, a.topk_ids, axis=-1)
            lps = contrasted(a.topk_logprobs, closed_topk, options.context_contrast)
            out.append(replace(e, answer=replace(a, topk_logprobs=lps)))
    return out
