"""Knowledge seeding, step 3: the training loop.

Each step takes one off-policy batch; every few steps an on-policy batch (the student
samples, the teacher scores with the episode in context) and a Learning-to-Imitate
group are added. The gradients of the terms are summed with their weights and one
Adam update moves tonight's expert (nothing else is trainable).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import pocketsleep.backends  # noqa: F401  (fast BLAS before mlx loads)
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_map

from ..backends.mlx_lora import without_trainable_expert
from . import objective, transcript
from .options import SleepOptions
from .sampling import sample_group
from .selfstudy import Example, ModelIO, Teacher, fact_token_weights, teacher_logprobs

ON_POLICY_SAMPLES = 2
SAMPLE_TOKENS = 24


@dataclass
class DistillLog:
    steps: int = 0
    seconds: float = 0.0
    losses: dict[str, list[float]] = field(default_factory=dict)
    stopped_by_budget: bool = False
    # KL(teacher || student) per answer token on a sample of the learnable answers
    # and of the anchors, [before, after] the night: did it learn what it was shown,
    # and how far did it move where it should not? (The training loss mixes both.)
    fit: dict[str, list[float | None]] = field(default_factory=dict)

    def add(self, term: str, value: float) -> None:
        self.losses.setdefault(term, []).append(round(value, 5))

    def summary(self) -> dict:
        def mean(xs, part):
            # Fix: the first quarter of fewer than 4 values was empty (None in the
            # report); take at least one value, as the last quarter already did.
            xs = xs[:max(1, len(xs) // 4)] if part == "first" else xs[-max(1, len(xs) // 4):]
            return round(sum(xs) / len(xs), 4) if xs else None

        return {
            "steps": self.steps,
            "seconds": round(self.seconds, 1),
            "stopped_by_budget": self.stopped_by_budget,
            "loss_first_quarter": {k: mean(v, "first") for k, v in self.losses.items()},
            "loss_last_quarter": {k: mean(v, "last") for k, v in self.losses.items()},
            "fit_kl": dict(self.fit),
        }


def _offpolicy_items(io: ModelIO, examples: list[Example], fact_weight: float = 1.0,
                     *, negations: bool):
    return [(io.chat_ids(e.student_messages), e.answer.answer_ids, e.answer.topk_ids,
             e.answer.topk_logprobs,
             fact_token_weights(io, e, fact_weight, negations=negations))
            for e in examples]


# Answers of each kind the fit is measured on (one forward pass per batch of them,
# before and after: a few seconds a night).
FIT_SAMPLE = 8


def mean_kl(model, items: list, batch_size: int) -> float | None:
    """KL(teacher || student) per answer token over `items` (off-policy items), no
    gradient; None for no items."""
    total = count = 0.0
    for i in range(0, len(items), batch_size):
        batch = objective.offpolicy_batch(items[i:i + batch_size])
        kl, ntoks = objective.offpolicy_kl(model, batch)
        total += kl.item() * ntoks.item()
        count += ntoks.item()
    return round(total / count, 4) if count else None


class OffPolicyBatches:
    """Batches of teacher answers in which a fixed share are anchors.

    Anchors are few next to the day's questions; drawn at random they appeared in one
    batch out of several, and general text drifted in between. A fixed share in every
    batch holds old behaviour in place at each step. With
    SleepOptions.earlier_anchor_slots, that many of the anchor places go to earlier
    nights' probes alone, so they are replayed at a fixed rate, not in proportion to
    their number among the anchors."""

    def __init__(self, io: ModelIO, train: list[Example], options: SleepOptions,
                 rng: random.Random):
        self.learn = _offpolicy_items(io, [e for e in train if e.kind != "anchor"],
                                      options.fact_token_weight,
                                      negations=options.heed_negations)
        anchors = [e for e in train if e.kind == "anchor"]
        marked = list(zip(_offpolicy_items(io, anchors, negations=options.heed_negations),
                          [e.earlier for e in anchors]))
        rng.shuffle(self.learn)
        rng.shuffle(marked)  # the same draws as shuffling the items alone
        self.anchor = [item for item, _ in marked]
        apart = options.earlier_anchor_slots > 0  # else earlier probes are generic ones
        earlier = [item for item, is_earlier in marked if apart and is_earlier]
        generic = [item for item, is_earlier in marked if not (apart and is_earlier)]
        share = options.anchor_share
        n_anchor = max(1, round(options.batch_size * share)) if share > 0 else 0
        n_anchor = (n_anchor if self.learn else options.batch_size) if self.anchor else 0
        n_earlier = min(options.earlier_anchor_slots, n_anchor) if earlier else 0
        if not generic:
            n_earlier = n_anchor
        self.pools = [(self.learn, options.batch_size - n_anchor if self.learn else 0),
                      (generic, n_anchor - n_earlier), (earlier, n_earlier)]
        self.cursors = [0] * len(self.pools)

    def __bool__(self) -> bool:
        return bool(self.learn or self.anchor)

    def next(self) -> list:
        out = []
        for which, (pool, n) in enumerate(self.pools):
            out += [pool[(self.cursors[which] + i) % len(pool)] for i in range(n)]
            self.cursors[which] += n
        return out


def distill(io: ModelIO, teacher: Teacher, train: list[Example], options: SleepOptions,
            deadline: float | None = None,
            progress: Callable[[str, int, int], None] = lambda *a: None,
            transcripts: Sequence[list[int]] = ()) -> DistillLog:
    """`transcripts`: the episode's conversations as token ids, for the transcript
    term (SleepOptions.transcript_weight; none: no such term)."""
    model = io.model
    rng = random.Random(options.seed)
    batches = OffPolicyBatches(io, train, options, rng)
    learnable = [e for e in train if e.kind != "anchor"]
    optimizer = optim.Adam(learning_rate=options.learning_rate)
    grads_of = {
        "off_policy": nn.value_and_grad(model, lambda m, b: objective.offpolicy_loss(m, b)[0]),
        "on_policy": nn.value_and_grad(model, lambda m, b: objective.onpolicy_loss(m, b)[0]),
        "lti": nn.value_and_grad(model, lambda m, b: objective.lti_loss(m, b)[0]),
        "transcript": nn.value_and_grad(model, lambda m, b: transcript.transcript_loss(m, *b)[0]),
    }
    said = (transcript.batches(list(transcripts), options.batch_size, options.seed)
            if options.transcript_weight and transcripts else None)
    log = DistillLog()
    started = time.perf_counter()
    samples = {"learnable": batches.learn[:FIT_SAMPLE], "anchors": batches.anchor[:FIT_SAMPLE]}
    log.fit = {k: [mean_kl(model, v, options.batch_size)] for k, v in samples.items()}
    longest = 0.0  # seconds of the longest step so far (on-policy and LTI ones: 3-4x)
    for step in range(options.steps):
        # Stop before a step that could end past the deadline: checking only whether
        # it had passed overran a 5-minute budget by a step (bench/RESULTS.md).
        step_started = time.perf_counter()
        if deadline is not None and step_started + longest > deadline:
            log.stopped_by_budget = True
            break
        progress("distilling", step, options.steps)
        terms: list[tuple[str, float, objective.Batch]] = []
        if options.off_policy and batches:
            terms.append(("off_policy", 1.0, objective.offpolicy_batch(batches.next())))
        if options.on_policy and learnable and step % options.on_policy_every == 0:
            terms.append(("on_policy", options.on_policy_weight,
                          _onpolicy(io, teacher, rng.choice(learnable), options.seed + step)))
        if options.lti and learnable and step % options.lti_every == 0:
            batch = _lti(io, rng.choice(learnable), options, options.seed + step)
            if batch is not None:
                terms.append(("lti", options.lti_weight, batch))
        if said is not None and step % options.transcript_every == 0:
            terms.append(("transcript", options.transcript_weight,
                          transcript.collate(next(said))))
        if not terms:
            break
        total = None
        for name, weight, batch in terms:
            loss, grads = grads_of[name](model, batch)
            log.add(name, loss.item())
            scaled = tree_map(lambda g: g * weight, grads)
            total = scaled if total is None else tree_map(lambda a, b: a + b, total, scaled)
        optimizer.update(model, total)
        mx.eval(model.trainable_parameters(), optimizer.state)
        log.steps += 1
        longest = max(longest, time.perf_counter() - step_started)
    for k, v in samples.items():
        log.fit[k].append(mean_kl(model, v, options.batch_size))
    log.seconds = time.perf_counter() - started
    return log


def _onpolicy(io: ModelIO, teacher: Teacher, example: Example, seed: int) -> objective.Batch:
    prompt = io.chat_ids(example.student_messages)
    samples = sample_group(io.model, prompt, ON_POLICY_SAMPLES, io.eos_ids, SAMPLE_TOKENS,
                           temperature=1.0, seed=seed)
    samples = [s if s else [next(iter(io.eos_ids))] for s in samples]
    with without_trainable_expert(io.model):
        targets = [teacher_logprobs(teacher, example.teacher_messages, s) for s in samples]
    return objective.onpolicy_batch(prompt, samples, targets)


def _lti(io: ModelIO, example: Example, options: SleepOptions, seed: int):
    prompt = io.chat_ids(example.student_messages)
    samples = sample_group(io.model, prompt, options.lti_group, io.eos_ids, SAMPLE_TOKENS,
                           temperature=1.0, seed=seed)
    rewards = [objective.token_f1(s, example.answer.tokens) for s in samples]
    advantages = objective.group_advantages(rewards)
    keep = [(s, a) for s, a in zip(samples, advantages) if s]
    if not keep or all(a == 0 for _, a in keep):
        return None  # every sample equally good: no signal in this group
    return objective.lti_batch(prompt, [s for s, _ in keep], [a for _, a in keep])
