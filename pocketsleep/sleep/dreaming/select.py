"""Dreaming, part 2: keep the dreams tonight's expert has most to learn from.

Each candidate is scored by the norm of the gradient of its SFT loss with respect to
tonight's expert (nothing else is trainable): a dream the expert already fits gives
a small gradient, one it would have to move for a large one. The top-k are kept,
plus m others at random (the paper's hedge: the largest gradients are often the
noisiest dreams).

A dream is trained like a teacher answer in distill.py: against the teacher's top-k
and tail at each token of its answer (`soft_item`; the teacher wrote it), and a
replayed dream against the pre-sleep model's own distribution on its text
(`held_item`), so that rehearsal holds what earlier nights taught rather than
sharpening it. Against one-hot targets (`sft_item`: objective.offpolicy_loss is
then exactly the SFT cross-entropy) the first dev-week night with dreaming raised
general-text perplexity by 13.6%, the sharpening the tail bucket removed from
seeding. Dreams, replayed dreams and anchors share one batch and one loss.
"""

from __future__ import annotations

import random

import pocketsleep.backends  # noqa: F401  (fast BLAS before mlx loads)
import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from ... import prompts
from .. import objective
from ..sampling import Generated
from ..selfstudy import ModelIO, forced_answer


def sft_item(io: ModelIO, request: str, content: str, k: int) -> tuple:
    """(student prompt ids, answer ids + end, one-hot top-k ids, log-probs), the item
    shape objective.offpolicy_batch takes."""
    prompt = io.chat_ids(prompts.closed_book(request))
    answer = io.text_ids(content) + [io.end_token]
    ids = np.zeros((len(answer), k), dtype=np.int32)
    ids[:, 0] = answer
    lps = np.full((len(answer), k), objective.NEG, dtype=np.float32)
    lps[:, 0] = 0.0
    return prompt, answer, ids, lps


def soft_item(io: ModelIO, request: str, answer: Generated) -> tuple:
    """The same shape, with a teacher answer's own top-k distributions as targets."""
    return (io.chat_ids(prompts.closed_book(request)), answer.answer_ids, answer.topk_ids,
            answer.topk_logprobs)


def held_item(io: ModelIO, request: str, content: str, k: int) -> tuple:
    """A replayed dream, with the model's distribution on its text before tonight
    (tonight's expert off) as the targets: rehearsal keeps it where it is."""
    messages = prompts.closed_book(request)
    answer = forced_answer(io, messages, io.text_ids(content) + [io.end_token], k)
    return soft_item(io, request, answer)


def sft_loss(model, batch: objective.Batch):
    return objective.offpolicy_loss(model, batch)[0]


def gradient_norms(io: ModelIO, items: list[tuple]) -> list[float]:
    """‖∇ SFT loss‖ of each item alone, w.r.t. the trainable parameters."""
    grad_of = nn.value_and_grad(io.model, sft_loss)
    norms = []
    for item in items:
        _, grads = grad_of(io.model, objective.offpolicy_batch([item]))
        leaves = [g for _, g in tree_flatten(grads)]
        norms.append(float(mx.sqrt(sum((g.astype(mx.float32) ** 2).sum() for g in leaves)).item())
                     if leaves else 0.0)
    return norms


def choose(scores: list[float], keep_top: int, keep_random: int,
           rng: random.Random) -> list[int]:
    """Indices of the top `keep_top` scores, plus `keep_random` of the rest at random."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    top, rest = order[:keep_top], order[keep_top:]
    return sorted(top + rng.sample(rest, min(keep_random, len(rest))))
