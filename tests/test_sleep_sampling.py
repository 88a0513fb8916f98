"""Sleep's generation loops on a tiny random llama: greedy is the argmax chain, the
top-k targets match the model's distribution, batching changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
from mlx.utils import tree_map  # noqa: E402
from tiny_models import tiny_mlx_llama  # noqa: E402

from pocketsleep.sleep import sampling  # noqa: E402
from pocketsleep.sleep.sampling import fork, generate, generate_batch, prefill, sample_group  # noqa: E402

VOCAB = 64
K = 5


@pytest.fixture(scope="module")
def model():
    m = tiny_mlx_llama(vocab_size=VOCAB)
    # Larger weights than the default init: a peaked distribution, no near-ties.
    m.update(tree_map(lambda w: w * 3, m.parameters()))
    m.eval()
    mx.eval(m.parameters())
    return m


def full_logprobs(model, ids: list[int]) -> np.ndarray:
    """log-probs of the next token after each prefix of `ids`, without any cache."""
    logits = np.array(model(mx.array(ids)[None])[0]).astype(np.float64)
    logits -= logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def greedy_chain(model, prompt: list[int], n: int) -> list[int]:
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(full_logprobs(model, seq)[-1].argmax()))
    return seq[len(prompt):]


PROMPTS = [[1, 2, 3, 4, 5], [7, 8], [9, 10, 11, 12, 13, 14, 15, 16], [1, 2, 3, 30, 31, 32]]


def check_topk(model, prompt, out: sampling.Generated, k=K):
    """Row t is the top-k of the distribution that chose answer token t."""
    answer = out.answer_ids
    assert out.topk_ids.shape == out.topk_logprobs.shape == (len(answer), k)
    lp = full_logprobs(model, prompt + answer[:-1])[len(prompt) - 1:]
    for t, tok in enumerate(answer):
        row = out.topk_ids[t]
        assert tok in row
        assert len(set(row.tolist())) == k
        np.testing.assert_allclose(out.topk_logprobs[t], lp[t, row], atol=1e-3)
        rest = np.delete(lp[t], row)
        assert out.topk_logprobs[t].min() >= rest.max() - 1e-4  # they are the top k


@pytest.mark.parametrize("prompt", PROMPTS[:2])
def test_greedy_generate_is_the_argmax_chain_with_its_topk_rows(model, prompt):
    out = generate(model, prompt, eos_ids=set(), max_tokens=6, temperature=0.0, top_k=K)
    assert out.tokens == greedy_chain(model, prompt, 6)
    assert out.end_token is None and out.answer_ids == out.tokens
    check_topk(model, prompt, out)


def test_generate_stops_at_an_end_token_and_keeps_its_row(model):
    prompt = PROMPTS[0]
    chain = greedy_chain(model, prompt, 6)
    stop = next(i for i, t in enumerate(chain) if i > 0 and t not in chain[:i])
    out = generate(model, prompt, eos_ids={chain[stop], VOCAB + 5}, max_tokens=6, top_k=K)
    assert out.tokens == chain[:stop]
    assert out.end_token == chain[stop]
    assert out.answer_ids == chain[:stop + 1]
    assert out.topk_ids.shape[0] == stop + 1
    check_topk(model, prompt, out)


def test_generate_from_a_prefix_cache_equals_generate_from_scratch(model):
    prefix, prompt = [1, 2, 3], PROMPTS[0]
    cache, _ = prefill(model, prefix)
    plain = generate(model, prompt, set(), 5, top_k=K)
    cached = generate(model, prompt, set(), 5, top_k=K, cache=fork(cache))
    assert cached.tokens == plain.tokens
    np.testing.assert_allclose(cached.topk_logprobs, plain.topk_logprobs, atol=1e-4)
    assert cache[0].offset == len(prefix)  # the fork was consumed, not the original


def test_generate_batch_greedy_equals_generate_for_each_prompt(model):
    outs = generate_batch(model, PROMPTS, eos_ids=set(), max_tokens=6,
                          temperatures=[0.0] * len(PROMPTS), top_k=K)
    assert len(outs) == len(PROMPTS)
    for prompt, out in zip(PROMPTS, outs):
        single = generate(model, prompt, set(), 6, top_k=K)
        assert out.tokens == single.tokens
        assert out.end_token is None
        check_topk(model, prompt, out)


def test_generate_batch_with_end_tokens_and_forked_prefix_caches(model):
    prefix = [1, 2, 3]
    cache, _ = prefill(model, prefix)
    # The end token: one that some prompt's greedy chain reaches after a few tokens.
    chains = [greedy_chain(model, p, 6) for p in PROMPTS]
    eos = {chains[0][2]} if chains[0][2] not in chains[0][:2] else {chains[0][1]}
    caches = [fork(cache) if p[:len(prefix)] == prefix else None for p in PROMPTS]
    assert sum(c is not None for c in caches) == 2
    outs = generate_batch(model, PROMPTS, eos, 6, [0.0] * len(PROMPTS), top_k=K, caches=caches)
    for prompt, out in zip(PROMPTS, outs):
        single = generate(model, prompt, eos, 6, top_k=K)
        assert (out.tokens, out.end_token) == (single.tokens, single.end_token)
        assert out.end_token is None or out.end_token in eos
        assert not set(out.tokens) & eos
        check_topk(model, prompt, out)
    assert outs[0].end_token is not None
    assert cache[0].offset == len(prefix)


def test_generate_batch_sampling_is_seeded(model):
    run = lambda seed: [o.tokens for o in generate_batch(  # noqa: E731
        model, PROMPTS[:2] * 2, set(), 8, [1.5] * 4, top_k=K, seed=seed)]
    first = run(3)
    assert first == run(3)
    assert any(first != run(s) for s in (4, 5, 6))


def test_sample_group_shapes_and_seeds(model):
    prompt = PROMPTS[1]
    group = sample_group(model, prompt, 3, eos_ids=set(), max_tokens=7, temperature=1.5, seed=1)
    assert len(group) == 3 and all(len(s) == 7 for s in group)
    assert all(0 <= t < VOCAB for s in group for t in s)
    assert group == sample_group(model, prompt, 3, set(), 7, temperature=1.5, seed=1)
    assert any(group != sample_group(model, prompt, 3, set(), 7, temperature=1.5, seed=s)
               for s in (2, 3, 4))
    # Greedy: every member is the argmax chain.
    greedy = sample_group(model, prompt, 2, set(), 5, temperature=0.0)
    assert greedy == [greedy_chain(model, prompt, 5)] * 2


def test_sample_group_drops_end_tokens_and_stops_each_sample_there(model):
    prompt = PROMPTS[1]
    chain = greedy_chain(model, prompt, 6)
    eos = {chain[3]}
    group = sample_group(model, prompt, 2, eos, 6, temperature=0.0)
    assert group == [chain[:chain.index(chain[3])]] * 2
    sampled = sample_group(model, prompt, 4, eos, 6, temperature=2.0, seed=7)
    assert len(sampled) == 4
    assert all(len(s) <= 6 and not set(s) & eos for s in sampled)
