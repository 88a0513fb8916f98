"""A consolidation's gate: the new expert must do the work of the experts it retires.

Measured closed-book on one model in three states: "before", the personal model
as it is (the retiring experts on, the new expert off); "after" (the retiring
experts off, the new expert on); and "without" (both off: no memory of them).

- Recall on the retiring experts' stored probes must not be lost: greedy answers
  that contain the expected answer must not become fewer, and their soft recall
  must not drop by more than a night's gate lets earlier probes wobble. Soft
  recall is the mean over probes of exp(mean answer log-prob), the per-token
  probability of saying the expected answer: unlike a mean log-prob, it is not
  swayed by a probe no state of the model can say (-35 nats/token moving to -36).
  The other active experts' probes are held to the same rule.
- Held-out written questions (answered by the teacher, never trained on) must be
  more likely "after" than "without": the new expert learned something that
  carries over. ("Before" is the teacher scoring its own greedy answers, which no
  student can match on unseen questions.)
- Drift on generic prompts and general-text perplexity, with a night's
  thresholds, taken against "before". A night's gate compares with the model
  without the new expert; here that would be the model without the memories being
  consolidated, and it would count against the new expert every change the
  nightly experts were accepted with.
"""

from __future__ import annotations

import math

import numpy as np

from .. import prompts
from ..backends.mlx_lora import without_trainable_expert
from ..eval.scoring import mentions
from . import gate
from .gate import GateResult
from .options import SleepOptions
from .sampling import generate_batch
from .selfstudy import Example, ModelIO
from .wearing import WearingTeacher


def probe_scores(io: ModelIO, probes: list[tuple[str, str]], options: SleepOptions,
                 greedy: bool = True) -> dict:
    """Soft recall of `probes` and, if `greedy`, how many greedy answers contain the
    expected answer."""
    probes = [(q, a) for q, a in probes if a.strip()]
    asked = [prompts.closed_book(q) for q, _ in probes]
    logprobs = [gate.mean_answer_logprob(io, m, io.text_ids(a))
                for m, (_, a) in zip(asked, probes)]
    out = {"soft_recall": float(np.mean(np.exp(logprobs))) if probes else None,
           "logprobs": [round(x, 4) for x in logprobs]}
    if greedy and probes:
        said = generate_batch(io.model, [io.chat_ids(m) for m in asked], io.eos_ids,
                              options.max_answer_tokens, [0.0] * len(asked),
                              top_k=options.top_k)
        out["recalled"] = sum(mentions(io.decode(s.tokens), [a])
                              for s, (_, a) in zip(said, probes))
    return out


def _state(io: ModelIO, heldout, anchors, kept, earlier, options) -> dict:
    m = gate.measure(io, heldout, anchors, [])
    m.pop("earlier_logprob")
    m["kept"] = probe_scores(io, kept, options)
    m["earlier"] = probe_scores(io, earlier, options, greedy=False)
    return m


def check(teacher: WearingTeacher, heldout: list[Example], anchors: list[Example],
          earlier: list[tuple[str, str]], kept: list[tuple[str, str]],
          options: SleepOptions) -> GateResult:
    """`kept`: the retiring experts' probes; `earlier`: the other active experts'."""
    io = teacher.student_io
    with teacher.wearing():
        before = _state(io, heldout, anchors, kept, earlier, options)
    after = _state(io, heldout, anchors, kept, earlier, options)
    with without_trainable_expert(io.model):
        without = gate.measure(io, heldout, [], [])["heldout_logprob"]
    drift = gate.drift_kl(before.pop("anchor_logprobs"), after.pop("anchor_logprobs"))
    ppl_change = after["general_ppl"] / before["general_ppl"] - 1
    # A night's gate lets earlier probes lose this many nats per token; as a ratio of
    # per-token probability, the same allowance.
    keep_ratio = math.exp(-(gate.EARLIER_TOLERANCE + options.max_earlier_drop))
    reasons = []
    for key, what in (("kept", "the retiring experts' probes"),
                      ("earlier", "the other experts' probes")):
        b, a = before[key]["soft_recall"], after[key]["soft_recall"]
        if b is not None and a < b * keep_ratio:
            reasons.append(f"soft recall of {what} fell from {b:.3g} to {a:.3g}")
    if after["kept"].get("recalled", 0) < before["kept"].get("recalled", 0):
        reasons.append(f"recalls {after['kept']['recalled']} of the retiring experts' "
                       f"{len(kept)} probes; they recalled {before['kept']['recalled']}")
    if without is not None and after["heldout_logprob"] <= without:
        reasons.append("held-out questions are no more likely than without the experts "
                       f"({without:.3f} -> {after['heldout_logprob']:.3f} nats/token)")
    if drift > options.max_drift_kl:
        reasons.append(f"generic answers drifted (KL {drift:.3f} > {options.max_drift_kl})")
    if ppl_change > options.max_ppl_increase:
        reasons.append(f"general-text perplexity rose {ppl_change:+.1%} "
                       f"(limit {options.max_ppl_increase:+.0%})")
    metrics = {"before": before, "after": after, "heldout_without": without,
               "drift_kl": round(drift, 4), "ppl_change": round(ppl_change, 4),
               "probes": len(kept)}
    return GateResult(passed=not reasons or not options.gate, reasons=reasons, metrics=metrics)
