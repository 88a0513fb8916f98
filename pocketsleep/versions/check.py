"""Before switching: is the fused model the same model as base + experts?

Fusing is exact in arithmetic (W + scale·(A B)ᵀ), so any real difference means a
bug or a damaged file, and the user would silently get a different assistant. Both
are run on the same inputs, in float32:

1. base + experts (unfused) answers a few fixed questions and the stored probes
   (the questions sleep kept to test what it learned) greedily, with no context;
   its logits along those answers are kept;
2. the fused MLX model is run on exactly the same tokens: maximum logit
   difference, mean KL(unfused ‖ fused) per position, and whether it would give
   the same greedy answer (same argmax everywhere; otherwise it answers itself);
   recall = probes whose expected answer appears in the answer;
3. the fused GGUF, in llama.cpp (when installed), on the same tokens against the
   unfused logits: it holds f16 weights, so it gets a relative bound.

The merge refuses to switch when a bound is exceeded or the fused model recalls
fewer probes than base + experts.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import prompts
from ..config import Paths
from ..eval.scoring import mentions
from ..models import ResolvedModel

# Generic questions every version is compared on, stored probes or not.
FIXED_QUESTIONS = prompts.ANCHOR_PROMPTS[:3]
MAX_PROBES = 24  # the most recent ones: each costs a greedy answer
ANSWER_TOKENS = 24
# Float32 against float32: only summation order differs (measured ~1e-5 on the
# embedded model); a missing or wrongly signed expert moves logits by whole units.
MAX_LOGIT_DIFF = 0.05
MAX_MEAN_KL = 1e-4
# The GGUF holds f16 weights: max |diff| / max |logit|.
MAX_GGUF_RELATIVE = 0.02

Progress = Callable[[str, int, int], None]


@dataclass
class CheckResult:
    max_logit_diff: float
    mean_kl: float
    positions: int  # logit vectors compared
    probes: int
    recall_unfused: int
    recall_fused: int
    same_answers: int  # questions (fixed + probes) answered identically
    questions: int
    gguf_max_logit_diff: float | None = None
    gguf_relative: float | None = None
    gguf_same_argmax: float | None = None  # fraction of positions
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Reference:
    """One question as base + experts answered it."""

    prompt: list[int]
    answer: list[int]  # greedy tokens, without the end token
    text: str
    logits: np.ndarray  # [len(answer) + 1, vocab]: from the last prompt token on

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.answer


def compare(paths: Paths, base: ResolvedModel, experts: Sequence[Path], fused_mlx: Path,
            fused_gguf: Path | None, probes: Sequence[tuple[str, str]],
            progress: Progress = lambda *a: None) -> CheckResult:
    """Compare base + `experts` with the fused model (MLX folder and GGUF)."""
    from ..backends.mlx_engine import MlxEngine

    probes = list(probes)[-MAX_PROBES:]
    questions = list(FIXED_QUESTIONS) + [q for q, _ in probes]
    unfused = MlxEngine.load(base, paths, dtype="float32")
    try:
        for folder in experts:
            unfused.attach_expert(folder)
        refs = []
        for i, question in enumerate(questions):
            progress("merge: checking (base + experts answer)", i, len(questions))
            refs.append(answer(unfused, question))
    finally:
        unfused.close()
    fused = MlxEngine.load(ResolvedModel("fused", "mlx", fused_mlx, "fused"), paths,
                           dtype="float32")
    try:
        result = _against_fused(fused, refs, probes, progress)
    finally:
        fused.close()
    if fused_gguf is not None and importlib.util.find_spec("llama_cpp") is not None:
        progress("merge: checking the GGUF (llama.cpp)", 0, 1)
        _against_gguf(result, fused_gguf, refs)
    result.reasons = reasons(result)
    return result


def answer(engine, question: str) -> Reference:
    """`engine`'s greedy closed-book answer to `question`, with its logits."""
    prompt = engine.prompt_tokens(prompts.closed_book(question))
    tokens = greedy(engine.model, prompt, set(engine.tokenizer.eos_token_ids))
    logits = position_logits(engine.model, prompt + tokens, len(prompt) - 1)
    return Reference(prompt, tokens, engine.tokenizer.decode(tokens), logits)


def greedy(model, prompt: list[int], eos_ids: set[int], max_tokens: int = ANSWER_TOKENS) -> list[int]:
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    out = []
    for token, _ in generate_step(mx.array(prompt), model, max_tokens=max_tokens):
        if token in eos_ids:
            break
        out.append(int(token))
    return out


def position_logits(model, tokens: list[int], first: int) -> np.ndarray:
    """The model's logits at positions `first`.. of `tokens`, float32."""
    import mlx.core as mx

    logits = model(mx.array(tokens)[None])[0, first:].astype(mx.float32)
    return np.array(logits)


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    top = x.max(-1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(-1, keepdims=True))


def kl(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    """KL(p ‖ q) per position."""
    lp, lq = log_softmax(p_logits), log_softmax(q_logits)
    return (np.exp(lp) * (lp - lq)).sum(-1)


def _against_fused(fused, refs: list[Reference], probes, progress) -> CheckResult:
    max_diff, kls, same, texts = 0.0, [], 0, []
    for i, ref in enumerate(refs):
        progress("merge: checking (fused model)", i, len(refs))
        ours = position_logits(fused.model, ref.tokens, len(ref.prompt) - 1)
        max_diff = max(max_diff, float(np.abs(ours - ref.logits).max()))
        kls.extend(kl(ref.logits, ours).tolist())
        if (ours.argmax(-1) == ref.logits.argmax(-1)).all():
            same += 1  # the same choice at every step: the same greedy answer
            texts.append(ref.text)
        else:
            own = greedy(fused.model, ref.prompt, set(fused.tokenizer.eos_token_ids))
            texts.append(fused.tokenizer.decode(own))
    first = len(refs) - len(probes)  # the probes come after the fixed questions
    expected = [a for _, a in probes]
    return CheckResult(
        max_logit_diff=max_diff, mean_kl=float(np.mean(kls)), positions=len(kls),
        probes=len(probes), recall_unfused=recall([r.text for r in refs[first:]], expected),
        recall_fused=recall(texts[first:], expected), same_answers=same, questions=len(refs))


def recall(answers: list[str], expected: list[str]) -> int:
    """How many answers contain their expected answer (a whole word or phrase)."""
    return sum(mentions(a, [e]) for a, e in zip(answers, expected))


def _against_gguf(result: CheckResult, gguf: Path, refs: list[Reference]) -> None:
    from ..backends.llamacpp_logits import sequence_logits

    theirs = sequence_logits(gguf, [r.tokens for r in refs], [len(r.prompt) - 1 for r in refs])
    diff = max(float(np.abs(t - r.logits).max()) for t, r in zip(theirs, refs))
    scale = max(float(np.abs(r.logits).max()) for r in refs)
    agree = np.concatenate([t.argmax(-1) == r.logits.argmax(-1) for t, r in zip(theirs, refs)])
    result.gguf_max_logit_diff = diff
    result.gguf_relative = diff / scale
    result.gguf_same_argmax = float(agree.mean())


def reasons(r: CheckResult) -> list[str]:
    out = []
    if r.max_logit_diff > MAX_LOGIT_DIFF:
        out.append(f"fused and unfused logits differ by up to {r.max_logit_diff:.3g} "
                   f"(limit {MAX_LOGIT_DIFF})")
    if r.mean_kl > MAX_MEAN_KL:
        out.append(f"mean KL between fused and unfused is {r.mean_kl:.3g} (limit {MAX_MEAN_KL})")
    if r.recall_fused < r.recall_unfused:
        out.append(f"the fused model recalls {r.recall_fused} of {r.probes} stored probes, "
                   f"base + experts {r.recall_unfused}")
    if r.gguf_relative is not None and r.gguf_relative > MAX_GGUF_RELATIVE:
        out.append(f"the GGUF differs from base + experts by up to {r.gguf_relative:.3g} of "
                   f"the logit scale in llama.cpp (limit {MAX_GGUF_RELATIVE})")
    return out
