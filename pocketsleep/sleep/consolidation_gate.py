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
  A drop below gate.NEGLIGIBLE_RECALL is no recall lost (1e-6 -> 1e-7 is not recalled
  either way). The other active experts' probes are held to the same rule.
- Held-out written questions (answered by the teacher, never trained on) must not
  be less likely "after" than "without" (beyond the same allowance): the new
  expert must not unlearn what carries over. ("Before" is the teacher scoring its
  own greedy answers, which no student matches on unseen questions; and requiring
  a gain over "without" fails whenever the base model already says them.)
- General behaviour, with a night's thresholds: on generic prompts the model must
  not end further from "without" (KL) than the experts it replaces had taken it,
  plus a night's allowance; general text must not become less likely than both
  "before" and "without" allow. A night's gate compares with the model without
  the new expert; here that would count against the new expert every change the
  nightly experts were accepted with, and comparing with "before" would count
  against it every change it did not copy.
"""

from __future__ import annotations

from .. import prompts
from ..backends.mlx_lora import without_trainable_expert
from ..eval.scoring import mentions
from . import gate
from .gate import GateResult
from .options import SleepOptions
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
    out = {"soft_recall": gate.soft_recall(logprobs),
           "logprobs": [round(x, 4) for x in logprobs]}
    if greedy and probes:
        said = gate.greedy_answers(io, asked, options)
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
        without = gate.measure(io, heldout, anchors, [])
    base_anchors = without.pop("anchor_logprobs")
    drift_before = gate.drift_kl(base_anchors, before.pop("anchor_logprobs"))
    drift = gate.drift_kl(base_anchors, after.pop("anchor_logprobs"))
    ppl_change = after["general_ppl"] / max(before["general_ppl"], without["general_ppl"]) - 1
    # A night's gate lets earlier probes lose this many nats per token; as a ratio of
    # per-token probability, the same allowance.
    tolerance = gate.EARLIER_TOLERANCE + options.max_earlier_drop
    reasons = []
    for key, what in (("kept", "the retiring experts' probes"),
                      ("earlier", "the other experts' probes")):
        b, a = before[key]["soft_recall"], after[key]["soft_recall"]
        if gate.soft_recall_lost(b, a, tolerance):
            reasons.append(f"soft recall of {what} fell from {b:.3g} to {a:.3g}")
    if after["kept"].get("recalled", 0) < before["kept"].get("recalled", 0):
        reasons.append(f"recalls {after['kept']['recalled']} of the retiring experts' "
                       f"{len(kept)} probes; they recalled {before['kept']['recalled']}")
    w = without["heldout_logprob"]
    if w is not None and after["heldout_logprob"] < w - tolerance:
        reasons.append("held-out questions became less likely than without the experts "
                       f"({w:.3f} -> {after['heldout_logprob']:.3f} nats/token)")
    if drift > drift_before + options.max_drift_kl:
        reasons.append(f"generic answers drifted (KL {drift:.3f} from the model without the "
                       f"experts; they had {drift_before:.3f}, allowance {options.max_drift_kl})")
    if ppl_change > options.max_ppl_increase:
        reasons.append(f"general-text perplexity rose {ppl_change:+.1%} "
                       f"(limit {options.max_ppl_increase:+.0%})")
    metrics = {"before": before, "after": after, "without": without,
               "drift_kl": round(drift, 4), "drift_kl_before": round(drift_before, 4),
               "ppl_change": round(ppl_change, 4),
               "probes": len(kept)}
    return GateResult(passed=not reasons or not options.gate, reasons=reasons, metrics=metrics)
