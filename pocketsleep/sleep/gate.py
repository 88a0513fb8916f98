"""The gate: tonight's expert is accepted only if it helps and harms nothing.

Measured with the expert switched off ("before", the pre-sleep personal model) and
on ("after"), all closed-book:
- held-out self-study questions (never trained on): the teacher's answers must become
  more likely;
- drift on generic prompts: KL(before ‖ after) per token under a threshold;
- general-text perplexity: relative increase under a threshold;
- earlier nights' stored probes: their answers must not become less likely
  (SleepOptions.earlier_probe_check: all of each answer's tokens, or only those
  that spell its facts);
- a quiz of generic questions no night trains on (prompts.GATE_QUIZ): none the
  pre-sleep model answers right may be answered wrong (greedy, as `eval` scores).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pocketsleep.backends  # noqa: F401  (fast BLAS before mlx loads)
import mlx.core as mx
import numpy as np

from .. import prompts
from ..eval.scoring import mentions
from ..backends.mlx_lora import without_trainable_expert
from .options import SleepOptions
from .sampling import generate_batch
from .selfstudy import Example, ModelIO, answer_logprobs
from .words import content_words, token_positions, word_spans

# Earlier probes may wobble by this much (nats per token) without counting as a drop.
EARLIER_TOLERANCE = 0.05
# A soft recall this small is not recall: nothing is lost below it.
NEGLIGIBLE_RECALL = 0.01


@dataclass
class GateResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


def picked_logprobs(io: ModelIO, messages: list[dict], answer: list[int]) -> np.ndarray:
    """The log-probability of each token of `answer` as the reply to `messages`."""
    lp = answer_logprobs(io, messages, answer)
    return np.array(mx.take_along_axis(lp, mx.array(answer)[:, None], axis=-1)[:, 0])


def mean_answer_logprob(io: ModelIO, messages: list[dict], answer: list[int]) -> float:
    return float(picked_logprobs(io, messages, answer).mean())


def fact_positions(io: ModelIO, question: str, answer: list[int]) -> list[int]:
    """The positions of `answer`'s tokens that spell one of its content words the
    question does not hold ("Biscuit", "beagle" in "Your dog Biscuit is a beagle.",
    asked "What is my dog's name?"): where a stored probe's fact is, apart from the
    words around it, which a night that changes how answers are worded moves."""
    text = io.decode(answer)
    spans = word_spans(text, content_words(text) - content_words(question))
    return token_positions(io.decode, answer, spans)


def soft_recall(logprobs: list[float]) -> float | None:
    """The mean over probes of exp(mean log-prob per token): the per-token probability
    of saying them, which a probe no state of the model can say (-35 nats/token moving
    to -36) does not sway, as it sways a mean log-prob."""
    return float(np.mean(np.exp(logprobs))) if logprobs else None


def soft_recall_lost(before: float | None, after: float, allowed: float) -> bool:
    """A soft recall fell by more than `allowed` nats per token, as a ratio of
    per-token probability, and by more than NEGLIGIBLE_RECALL."""
    return (before is not None and after < before * np.exp(-allowed)
            and before - after > NEGLIGIBLE_RECALL)


def earlier_measures(io: ModelIO, earlier: list[tuple[str, str]]) -> dict:
    """Earlier nights' probes: the mean log-prob per token of their whole answers, and
    the soft recall of their fact tokens (fact_positions; probes with none left out)."""
    whole, facts = [], []
    for question, answer in earlier:
        if not answer.strip():
            continue
        ids = io.text_ids(answer)
        picked = picked_logprobs(io, prompts.closed_book(question), ids)
        whole.append(float(picked.mean()))
        where = fact_positions(io, question, ids)
        if where:
            facts.append(float(picked[where].mean()))
    return {"earlier_logprob": _mean(whole), "earlier_fact_recall": soft_recall(facts),
            "earlier_fact_logprobs": [round(x, 3) for x in facts]}


def _mean(xs) -> float | None:
    xs = list(xs)
    return float(np.mean(xs)) if xs else None


def answers_logprobs(io: ModelIO, examples: list[Example]) -> list[np.ndarray]:
    """Each example's log-probabilities over its answer positions (for drift_kl)."""
    return [np.array(answer_logprobs(io, e.student_messages, e.answer.answer_ids))
            for e in examples]


def measure(io: ModelIO, heldout: list[Example], anchors: list[Example],
            earlier: list[tuple[str, str]]) -> dict:
    """Everything the gate looks at, for the model as it is now."""
    general_lp = float(np.mean([
        mean_answer_logprob(io, prompts.closed_book(request), io.text_ids(text))
        for request, text in prompts.GATE_TEXTS]))
    return {
        "heldout_logprob": _mean(mean_answer_logprob(io, e.student_messages, e.answer.answer_ids)
                                 for e in heldout if e.kind != "anchor"),
        **earlier_measures(io, earlier),
        "general_ppl": float(np.exp(-general_lp)),
        "anchor_logprobs": answers_logprobs(io, anchors),
    }


def drift_kl(before: list[np.ndarray], after: list[np.ndarray]) -> float:
    """Mean per-token KL(before ‖ after) over the anchors' answer positions."""
    kls = [(np.exp(b) * (b - a)).sum(-1).mean() for b, a in zip(before, after)]
    return float(np.mean(kls)) if kls else 0.0


def greedy_answers(io: ModelIO, messages: list[list[dict]], options: SleepOptions):
    """Greedy closed-book answers, as the evaluation asks (batched)."""
    return generate_batch(io.model, [io.chat_ids(m) for m in messages], io.eos_ids,
                          options.max_answer_tokens, [0.0] * len(messages),
                          top_k=options.top_k)


def unseen_generic(io: ModelIO, options: SleepOptions, quiz=None) -> list[Example]:
    """The pre-sleep model's greedy answers to the quiz (prompts.GATE_QUIZ, or `quiz`:
    (question, keywords) pairs), which no night trains on: drift on them is drift the
    anchors could not hold back."""
    questions = [q for q, _ in quiz or prompts.GATE_QUIZ]
    messages = [prompts.closed_book(q) for q in questions]
    with without_trainable_expert(io.model):
        answers = greedy_answers(io, messages, options)
    return [Example("anchor", q, m, a)
            for q, m, a in zip(questions, messages, answers) if a.tokens]


def unseen_drift(io: ModelIO, unseen: list[Example]) -> float:
    with without_trainable_expert(io.model):
        before = answers_logprobs(io, unseen)
    return drift_kl(before, answers_logprobs(io, unseen))


def quiz_lost(io: ModelIO, unseen: list[Example], options: SleepOptions, quiz=None) -> dict:
    """Which quiz questions the pre-sleep model answered right (its answers are in
    `unseen`) and the model as it is now answers wrong, with the new answers."""
    expected = dict(quiz or prompts.GATE_QUIZ)
    right = [e for e in unseen if mentions(io.decode(e.answer.tokens), expected[e.question])]
    now = greedy_answers(io, [e.student_messages for e in right], options) if right else []
    lost = {e.question: io.decode(g.tokens).strip() for e, g in zip(right, now)
            if not mentions(io.decode(g.tokens), expected[e.question])}
    return {"quiz_right_before": len(right), "quiz_right_after": len(right) - len(lost),
            "quiz_lost": lost}


def check(io: ModelIO, heldout: list[Example], anchors: list[Example],
          earlier: list[tuple[str, str]], options: SleepOptions,
          unseen: list[Example] = ()) -> GateResult:
    """`unseen`: answers from `unseen_generic`, when the caller measured them."""
    with without_trainable_expert(io.model):
        before = measure(io, heldout, anchors, earlier)
    after = measure(io, heldout, anchors, earlier)
    drift = drift_kl(before.pop("anchor_logprobs"), after.pop("anchor_logprobs"))
    ppl_change = after["general_ppl"] / before["general_ppl"] - 1
    metrics = {"before": before, "after": after, "drift_kl": round(drift, 4),
               "ppl_change": round(ppl_change, 4)}
    if unseen:
        metrics["unseen_drift_kl"] = round(unseen_drift(io, unseen), 4)
        metrics.update(quiz_lost(io, unseen, options))
    reasons = []
    if heldout_not_improved(before, after):
        reasons.append("held-out self-study questions did not improve "
                       f"({before['heldout_logprob']:.3f} -> {after['heldout_logprob']:.3f} nats/token)")
    if drift > options.max_drift_kl:
        reasons.append(f"generic answers drifted (KL {drift:.3f} > {options.max_drift_kl})")
    if (options.max_unseen_drift_kl is not None and "unseen_drift_kl" in metrics
            and metrics["unseen_drift_kl"] > options.max_unseen_drift_kl):
        reasons.append(f"answers to questions never trained on drifted (KL "
                       f"{metrics['unseen_drift_kl']:.3f} > {options.max_unseen_drift_kl})")
    lost = metrics.get("quiz_lost", {})
    if options.max_quiz_lost is not None and len(lost) > options.max_quiz_lost:
        question, answer = next(iter(lost.items()))
        reasons.append(f"{len(lost)} of {metrics['quiz_right_before']} general questions it "
                       f"answered right it now gets wrong (\"{question}\" -> \"{answer[:60]}\")")
    if ppl_change > options.max_ppl_increase:
        reasons.append(f"general-text perplexity rose {ppl_change:+.1%} "
                       f"(limit {options.max_ppl_increase:+.0%})")
    reasons += earlier_dropped(before, after, options)
    return GateResult(passed=not reasons or not options.gate, reasons=reasons, metrics=metrics)


def heldout_not_improved(before: dict, after: dict) -> bool:
    """The held-out self-study questions were measured and did not become more
    likely (measure()'s figures before and after tonight's expert)."""
    b, a = before.get("heldout_logprob"), after.get("heldout_logprob")
    return b is not None and a is not None and a <= b


def earlier_dropped(before: dict, after: dict, options: SleepOptions) -> list[str]:
    """Why earlier nights' probes count as less likely now, by the measure
    SleepOptions.earlier_probe_check names; [] when they do not."""
    allowed = EARLIER_TOLERANCE + options.max_earlier_drop
    if options.earlier_probe_check == "facts":
        b, a = before.get("earlier_fact_recall"), after.get("earlier_fact_recall")
        if soft_recall_lost(b, a, allowed):
            return [f"earlier nights' facts became less likely (soft recall {b:.3f} -> {a:.3f})"]
        return []
    b, a = before["earlier_logprob"], after["earlier_logprob"]
    if b is not None and a < b - allowed:
        return [f"earlier nights' probes became less likely ({b:.3f} -> {a:.3f})"]
    return []
