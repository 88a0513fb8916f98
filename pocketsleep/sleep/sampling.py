"""Token generation for sleep: teacher answers with their top-k distributions, and
groups of student samples.

mlx-lm's generate_step yields one sequence's tokens; sleep also needs the teacher's
top-k log-probabilities at every step (the off-policy targets) and several samples of
one prompt at once (on-policy and Learning-to-Imitate), which on a CPU cost about the
same as one when batched. Both are short loops over the model with mlx-lm's KV cache.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pocketsleep.backends  # noqa: F401  (fast BLAS before mlx loads)
import mlx.core as mx
import numpy as np
from mlx_lm.models.cache import make_prompt_cache


@dataclass
class Generated:
    tokens: list[int]  # without the end token
    end_token: int | None  # the end token chosen, None if the length limit stopped it
    topk_ids: np.ndarray  # [len(answer_ids), k]: the step that chose each token
    topk_logprobs: np.ndarray  # same shape, natural log

    @property
    def answer_ids(self) -> list[int]:
        """The tokens the teacher produced, its end token included."""
        return self.tokens + ([self.end_token] if self.end_token is not None else [])


def log_softmax(logits: mx.array) -> mx.array:
    logits = logits.astype(mx.float32)
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)


def prefill(model, prompt: list[int], cache=None):
    """Run `prompt` through the model; returns (cache, logprobs of the next token)."""
    cache = cache if cache is not None else make_prompt_cache(model)
    logits = model(mx.array(prompt)[None], cache=cache)
    return cache, log_softmax(logits[:, -1, :])


def fork(cache):
    """An independent copy of a prompt cache (to reuse a shared prefix)."""
    return copy.deepcopy(cache)


def _choose(logprobs: mx.array, temperature: float, key) -> mx.array:
    if temperature <= 0:
        return mx.argmax(logprobs, axis=-1)
    return mx.random.categorical(logprobs / temperature, key=key)


def generate(model, prompt: list[int], eos_ids: set[int], max_tokens: int,
             temperature: float = 0.0, top_k: int = 16, cache=None, seed: int = 0) -> Generated:
    """One answer, with the top-k distribution of every step.

    `cache` may hold an already-processed prefix of `prompt` (then only the rest of
    the prompt is run); it is consumed.
    """
    done = cache[0].offset if cache is not None else 0
    cache, logprobs = prefill(model, prompt[done:], cache)
    key = mx.random.key(seed)
    tokens, ids, lps = [], [], []
    end = None
    for _ in range(max_tokens):
        key, sub = mx.random.split(key)
        token = _choose(logprobs, temperature, sub)
        top = mx.argpartition(-logprobs, kth=top_k - 1, axis=-1)[:, :top_k]
        top_lp = mx.take_along_axis(logprobs, top, axis=-1)
        mx.eval(token, top, top_lp)
        t = int(token.item())
        ids.append(np.array(top[0]))
        lps.append(np.array(top_lp[0]))
        if t in eos_ids:
            end = t
            # Make sure the chosen end token is among the targets.
            if t not in ids[-1]:
                ids[-1][-1], lps[-1][-1] = t, float(logprobs[0, t].item())
            break
        tokens.append(t)
        logits = model(mx.array([[t]]), cache=cache)
        logprobs = log_softmax(logits[:, -1, :])
    return Generated(tokens, end, np.stack(ids), np.stack(lps))


def sample_group(model, prompt: list[int], group: int, eos_ids: set[int], max_tokens: int,
                 temperature: float = 1.0, seed: int = 0) -> list[list[int]]:
    """`group` samples of one prompt, decoded together in one batch."""
    cache = make_prompt_cache(model)
    logits = model(mx.array([prompt] * group), cache=cache)
    logprobs = log_softmax(logits[:, -1, :])
    key = mx.random.key(seed)
    out: list[list[int]] = [[] for _ in range(group)]
    alive = [True] * group
    for _ in range(max_tokens):
        key, sub = mx.random.split(key)
        chosen = _choose(logprobs, temperature, sub)
        step = chosen.tolist()
        for i, t in enumerate(step):
            if alive[i]:
                if t in eos_ids:
                    alive[i] = False
                else:
                    out[i].append(t)
        if not any(alive):
            break
        logits = model(chosen[:, None], cache=cache)
        logprobs = log_softmax(logits[:, -1, :])
    return out


def generate_batch(model, prompts: list[list[int]], eos_ids: set[int], max_tokens: int,
                   temperatures: list[float], top_k: int = 16, caches: list | None = None,
                   seed: int = 0, batch_size: int = 16,
                   processors: list | None = None) -> list[Generated]:
    """Many answers at once with mlx-lm's BatchGenerator (continuous batching): on a
    CPU, decoding 16 sequences costs little more than one, since every step reads
    all the weights anyway. `caches[i]`, if given, already holds a prefix of
    `prompts[i]` (its length is taken from the cache) and is consumed.
    `processors[i]`, if given, is an mlx-lm logits processor for answer i (or None);
    the recorded top-k is of the processed distribution."""
    from mlx_lm.generate import BatchGenerator
    from mlx_lm.sample_utils import make_sampler

    mx.random.seed(seed)
    caches = caches or [None] * len(prompts)
    rests = [p[c[0].offset:] if c is not None else p for p, c in zip(prompts, caches)]
    generator = BatchGenerator(model, max_tokens=max_tokens,
                               stop_tokens=[[t] for t in sorted(eos_ids)],
                               completion_batch_size=batch_size,
                               prefill_batch_size=min(batch_size, 8))
    uids = generator.insert(rests, caches=caches,
                            samplers=[make_sampler(temp=t) for t in temperatures],
                            logits_processors=[[p] if p else [] for p in processors]
                            if processors else None)
    steps: dict[int, list] = {u: [] for u in uids}
    finished: dict[int, bool] = {}
    try:
        while len(finished) < len(uids):
            responses = generator.next_generated()
            if not responses:
                break
            for r in responses:
                lp = log_softmax(r.logprobs.reshape(1, -1))[0]
                top = mx.argpartition(-lp, kth=top_k - 1)[:top_k]
                steps[r.uid].append((r.token, np.array(top), np.array(lp[top])))
                if r.finish_reason is not None:
                    finished[r.uid] = r.finish_reason == "stop"
    finally:
        generator.close()
    out = []
    for u in uids:
        rows = steps[u]
        ids = np.stack([r[1] for r in rows]) if rows else np.zeros((0, top_k), np.int32)
        lps = np.stack([r[2] for r in rows]) if rows else np.zeros((0, top_k), np.float32)
        tokens = [r[0] for r in rows]
        end = tokens[-1] if rows and tokens[-1] in eos_ids else None
        if end is not None:
            tokens = tokens[:-1]
            if end not in ids[-1]:  # make sure the chosen end token is a target
                ids[-1][-1], lps[-1][-1] = end, rows[-1][2].min()
        out.append(Generated(tokens, end, ids, lps))
    return out
