"""Dreaming, part 3: fine-tune tonight's expert on the kept dreams (LoRA SFT).

Every batch mixes tonight's kept dreams with earlier nights' (replay, against
forgetting what they taught) and, at seeding's share, the anchors (generic requests
with the pre-sleep model's answers) so that general behaviour stays where the gate
wants it. Only tonight's expert is trainable, as in distill.py.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import pocketsleep.backends  # noqa: F401  (fast BLAS before mlx loads)
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from .. import objective
from ..options import SleepOptions
from .select import sft_loss


@dataclass
class RehearsalLog:
    steps: int = 0
    losses: list[float] = field(default_factory=list)
    stopped_by_budget: bool = False

    def summary(self) -> dict:
        q = max(1, len(self.losses) // 4)
        mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
        return {"steps": self.steps, "stopped_by_budget": self.stopped_by_budget,
                "loss_first_quarter": mean(self.losses[:q]),
                "loss_last_quarter": mean(self.losses[-q:])}


def batches(dreams: list[tuple], anchors: list[tuple], options: SleepOptions,
            rng: random.Random):
    """Endless batches: dreams (tonight's and replayed) in turn, a fixed share of
    anchors in each, as OffPolicyBatches does for seeding."""
    dreams, anchors = dreams[:], anchors[:]
    rng.shuffle(dreams)
    rng.shuffle(anchors)
    n_anchor = max(1, round(options.batch_size * options.anchor_share)) if anchors else 0
    n_dream = max(1, options.batch_size - n_anchor)
    i = j = 0
    while True:
        batch = [dreams[(i + t) % len(dreams)] for t in range(n_dream)]
        batch += [anchors[(j + t) % len(anchors)] for t in range(n_anchor)]
        i, j = i + n_dream, j + n_anchor
        yield batch


def rehearse(model, dreams: list[tuple], anchors: list[tuple], options: SleepOptions,
             stop_at: float | None = None, progress=lambda *a: None) -> RehearsalLog:
    """`options.dream_steps` Adam steps on the dream items (select.sft_item), with
    anchor items (same shape, the teacher's top-k) mixed in."""
    log = RehearsalLog()
    if not dreams:
        return log
    optimizer = optim.Adam(learning_rate=options.dream_lr)
    grad_of = nn.value_and_grad(model, sft_loss)
    source = batches(dreams, anchors, options, random.Random(options.seed))
    for step in range(options.dream_steps):
        if stop_at is not None and time.perf_counter() > stop_at:
            log.stopped_by_budget = True
            break
        progress("dreaming: rehearsing", step, options.dream_steps)
        loss, grads = grad_of(model, objective.offpolicy_batch(next(source)))
        optimizer.update(model, grads)
        mx.eval(model.trainable_parameters(), optimizer.state)
        log.losses.append(round(loss.item(), 5))
        log.steps += 1
    return log
