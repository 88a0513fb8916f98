"""The distillation losses of sleep, checked against numpy on a tiny random llama."""

from __future__ import annotations

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
import mlx.nn as nn  # noqa: E402
import mlx.optimizers as optim  # noqa: E402
from tiny_models import tiny_mlx_llama  # noqa: E402

from pocketsleep.backends import mlx_lora  # noqa: E402
from pocketsleep.sleep import objective  # noqa: E402
from pocketsleep.sleep.objective import NEG  # noqa: E402

VOCAB = 50


@pytest.fixture
def model():
    return tiny_mlx_llama(vocab_size=VOCAB)


def np_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def student_logprobs(model, inputs) -> np.ndarray:
    return np_log_softmax(np.array(model(inputs)))


def topk_rows(rng, n: int, k: int):
    """n rows of k distinct token ids and (unnormalised) log-probabilities."""
    ids = np.stack([rng.choice(VOCAB, size=k, replace=False) for _ in range(n)]).astype(np.int32)
    lps = np.log(rng.dirichlet(np.ones(k), size=n)).astype(np.float32) - 0.3  # not summing to 1
    return ids, lps


# -- off-policy ----------------------------------------------------------------------

def test_offpolicy_batch_aligns_each_topk_row_with_the_position_that_predicts_it():
    rng = np.random.default_rng(0)
    items = []
    for plen, alen in ((5, 3), (2, 6)):
        prompt = list(rng.integers(1, VOCAB, plen))
        answer = list(rng.integers(1, VOCAB, alen))
        items.append((prompt, answer, *topk_rows(rng, alen, 4)))
    batch = objective.offpolicy_batch(items)
    inputs, mask = np.array(batch.inputs), np.array(batch.mask)
    ids, lps = np.array(batch.extra["topk_ids"]), np.array(batch.extra["topk_logprobs"])
    width = max(len(p) + len(a) - 1 for p, a, _, _ in items)
    assert inputs.shape == mask.shape == (2, width) and ids.shape == lps.shape == (2, width, 4)
    for i, (prompt, answer, top_ids, top_lps) in enumerate(items):
        row = prompt + answer[:-1]  # the student reads the answer but its end token
        assert list(inputs[i, :len(row)]) == row and not inputs[i, len(row):].any()
        start = len(prompt) - 1
        for t in range(len(answer)):
            pos = start + t
            # The output at `pos` predicts answer[t]: everything up to answer[t-1] is read.
            assert list(inputs[i, :pos + 1]) == (prompt + answer)[:pos + 1]
            assert list(ids[i, pos]) == list(top_ids[t])
            np.testing.assert_allclose(lps[i, pos], top_lps[t])
        # The mask covers exactly the answer's positions; other targets are padding.
        expected = np.zeros(width)
        expected[start:start + len(answer)] = 1
        np.testing.assert_array_equal(mask[i], expected)
        assert (lps[i][expected == 0] == NEG).all()


def test_offpolicy_loss_is_cross_entropy_over_the_teacher_topk_and_a_tail_bucket(model):
    rng = np.random.default_rng(1)
    items = []
    for plen, alen in ((4, 5), (6, 2), (3, 3)):
        items.append((list(rng.integers(1, VOCAB, plen)), list(rng.integers(1, VOCAB, alen)),
                      *topk_rows(rng, alen, 5)))
    batch = objective.offpolicy_batch(items)
    loss, ntoks = objective.offpolicy_loss(model, batch)

    student = student_logprobs(model, batch.inputs).astype(np.float64)
    total, count = 0.0, 0
    for i, (prompt, answer, top_ids, top_lps) in enumerate(items):
        for t in range(len(answer)):
            pos = len(prompt) - 1 + t
            teacher = np.exp(top_lps[t].astype(np.float64))  # not renormalised
            picked = student[i, pos, top_ids[t]]
            student_rest = np.log(1 - np.exp(picked).sum())
            total += -(teacher * picked).sum() - (1 - teacher.sum()) * student_rest
            count += 1
    assert int(ntoks.item()) == count == sum(len(a) for _, a, _, _ in items)
    assert loss.item() == pytest.approx(total / count, rel=1e-4)


def test_token_weights_scale_each_tokens_term_in_the_loss_but_not_the_kl(model):
    rng = np.random.default_rng(2)
    prompt, answer = list(rng.integers(1, VOCAB, 4)), list(rng.integers(1, VOCAB, 3))
    rows = topk_rows(rng, 3, 5)
    plain = objective.offpolicy_batch([(prompt, answer, *rows)])
    weighted = objective.offpolicy_batch([(prompt, answer, *rows, np.array([1.0, 4.0, 1.0]))])
    student = student_logprobs(model, plain.inputs)
    terms = []
    for t in range(3):
        picked = student[0, len(prompt) - 1 + t, rows[0][t]]
        teacher = np.exp(rows[1][t].astype(np.float64))
        terms.append(-(teacher * picked).sum() - (1 - teacher.sum()) * np.log(1 - np.exp(picked).sum()))
    loss, ntoks = objective.offpolicy_loss(model, weighted)
    # Weighted sum over the answer's tokens, still divided by their count.
    assert int(ntoks.item()) == 3
    assert loss.item() == pytest.approx((terms[0] + 4 * terms[1] + terms[2]) / 3, rel=1e-4)
    assert objective.offpolicy_loss(model, plain)[0].item() == pytest.approx(sum(terms) / 3, rel=1e-4)
    assert (objective.offpolicy_kl(model, weighted)[0].item()
            == pytest.approx(objective.offpolicy_kl(model, plain)[0].item()))


def test_offpolicy_training_keeps_the_tail_mass_the_teacher_has(model):
    """Against the top-k renormalised to 1 the student would learn to put all its mass
    on those k tokens (sharpening it everywhere); with the tail bucket it learns the
    teacher's own split between the top-k and the rest."""
    prompt, answer = [3, 4, 5], [6, 7]
    top_ids = np.array([[6, 8], [7, 9]], dtype=np.int32)
    top_lps = np.log(np.array([[0.4, 0.2], [0.4, 0.2]], dtype=np.float32))  # tail 0.4
    batch = objective.offpolicy_batch([(prompt, answer, top_ids, top_lps)])
    step = nn.value_and_grad(model, lambda m, b: objective.offpolicy_loss(m, b)[0])
    optimizer = optim.Adam(learning_rate=0.05)
    for _ in range(150):
        _, grads = step(model, batch)
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state)
    student = np.exp(student_logprobs(model, batch.inputs)[0, 2:4])
    for row, ids in zip(student, top_ids):
        # Renormalised targets drive this sum to 1; the tail bucket keeps it near 0.6
        # (how near after 150 steps varies with the random model across machines).
        assert row[ids].sum() == pytest.approx(0.6, abs=0.15)
        assert row[ids[0]] / row[ids[1]] == pytest.approx(2.0, rel=0.3)


def test_offpolicy_loss_with_the_full_vocabulary_is_kl_plus_the_teacher_entropy(model):
    rng = np.random.default_rng(2)
    prompt, answer = [3, 4, 5], [6, 7]
    teacher = np_log_softmax(rng.standard_normal((2, VOCAB)) * 2)
    ids = np.tile(np.arange(VOCAB, dtype=np.int32), (2, 1))
    batch = objective.offpolicy_batch([(prompt, answer, ids, teacher.astype(np.float32))])
    loss, _ = objective.offpolicy_loss(model, batch)
    student = student_logprobs(model, batch.inputs)[0, 2:4]
    kl = (np.exp(teacher) * (teacher - student)).sum(-1)
    entropy = -(np.exp(teacher) * teacher).sum(-1)
    assert loss.item() == pytest.approx((kl + entropy).mean(), rel=1e-4)
    reported, ntoks = objective.offpolicy_kl(model, batch)
    assert ntoks.item() == 2 and reported.item() == pytest.approx(kl.mean(), rel=1e-3, abs=1e-5)


def test_offpolicy_kl_is_zero_when_the_student_says_what_the_teacher_says(model):
    """Top-k and tail taken from the student itself (an anchor at the start of a
    night): nothing to learn, whatever the top-k size."""
    prompt, answer = [3, 4, 5], [6, 7, 8]
    inputs = mx.array([prompt + answer[:-1]])
    own = student_logprobs(model, inputs)[0, 2:5]
    for k in (4, VOCAB):
        top = np.argsort(-own, axis=-1)[:, :k].astype(np.int32)
        lps = np.take_along_axis(own, top, axis=-1).astype(np.float32)
        batch = objective.offpolicy_batch([(prompt, answer, top, lps)])
        kl, _ = objective.offpolicy_kl(model, batch)
        assert abs(kl.item()) < 1e-5
        loss, _ = objective.offpolicy_loss(model, batch)
        assert loss.item() > 0.1  # the loss itself is the teacher's entropy, not 0


# -- on-policy -----------------------------------------------------------------------

def test_onpolicy_loss_is_the_exact_reverse_kl_at_the_sampled_positions(model):
    rng = np.random.default_rng(3)
    prompt = [1, 2, 3, 4]
    samples = [[5, 6, 7], [8], [9, 10, 11, 12, 13]]
    teacher = [np_log_softmax(rng.standard_normal((len(s), VOCAB)) * 3).astype(np.float32)
               for s in samples]
    batch = objective.onpolicy_batch(prompt, samples, teacher)
    mask = np.array(batch.mask)
    start = len(prompt) - 1
    for i, s in enumerate(samples):
        assert list(np.array(batch.inputs)[i, :len(prompt) + len(s) - 1]) == prompt + s[:-1]
        assert list(np.flatnonzero(mask[i])) == list(range(start, start + len(s)))
    loss, ntoks = objective.onpolicy_loss(model, batch)

    student = student_logprobs(model, batch.inputs)
    kls = []
    for i, s in enumerate(samples):
        for t in range(len(s)):
            q = student[i, start + t]
            kls.append((np.exp(q) * (q - teacher[i][t])).sum())  # KL(student || teacher)
    assert int(ntoks.item()) == len(kls) == sum(map(len, samples))
    assert loss.item() == pytest.approx(np.mean(kls), rel=1e-4)
    assert loss.item() > 0


def test_onpolicy_loss_is_zero_when_the_teacher_is_the_student(model):
    prompt, samples = [1, 2, 3], [[4, 5, 6], [7, 8]]
    dummy = [np.zeros((len(s), VOCAB), np.float32) for s in samples]
    inputs = objective.onpolicy_batch(prompt, samples, dummy).inputs
    student = student_logprobs(model, inputs)
    teacher = [student[i, 2:2 + len(s)].astype(np.float32) for i, s in enumerate(samples)]
    loss, _ = objective.onpolicy_loss(model, objective.onpolicy_batch(prompt, samples, teacher))
    assert abs(loss.item()) < 1e-5


# -- Learning to Imitate ---------------------------------------------------------------

@pytest.mark.parametrize("a, b, f1", [
    ([1, 2, 3], [1, 2, 3], 1.0),
    ([3, 2, 1], [1, 2, 3], 1.0),  # a bag of tokens: order does not matter
    ([1, 2], [2, 3], 0.5),
    ([1], [1, 2, 3, 4], 0.4),  # precision 1, recall 1/4
    ([1, 1, 2], [1, 2, 2], 2 / 3),  # counts are clipped: two tokens in common
    ([1, 1, 1], [1], 0.5),
    ([1, 2], [3, 4], 0.0),
    ([], [1], 0.0),
    ([1], [], 0.0),
])
def test_token_f1(a, b, f1):
    assert objective.token_f1(a, b) == pytest.approx(f1)
    assert objective.token_f1(b, a) == pytest.approx(f1)


def test_group_advantages():
    assert objective.group_advantages([1.0, 0.0]) == pytest.approx([1.0, -1.0])
    assert objective.group_advantages([0.0, 0.0, 1.0, 1.0]) == pytest.approx([-1, -1, 1, 1])
    assert objective.group_advantages([0.3, 0.3, 0.3]) == [0.0, 0.0, 0.0]
    assert objective.group_advantages([0.5]) == [0.0]
    adv = objective.group_advantages([0.1, 0.9, 0.4, 0.2])
    assert sum(adv) == pytest.approx(0.0, abs=1e-9)
    assert np.std(adv) == pytest.approx(1.0)
    assert np.argsort(adv).tolist() == [0, 3, 2, 1]  # the order of the rewards


def test_lti_batch_targets_are_the_next_tokens_and_weights_average_each_sample():
    prompt, samples = [1, 2, 3], [[4, 5], [6, 7, 8, 9]]
    batch = objective.lti_batch(prompt, samples, [0.5, -0.5])
    inputs, targets = np.array(batch.inputs), np.array(batch.extra["targets"])
    mask = np.array(batch.mask)
    for i, s in enumerate(samples):
        positions = np.flatnonzero(mask[i])
        assert list(positions) == list(range(2, 2 + len(s)))
        assert list(targets[i, positions]) == s  # position p is trained to say s[p - 2]
        assert list(inputs[i, :len(prompt) + len(s)]) == prompt + s
        assert mask[i].sum() == pytest.approx(1.0)
    assert np.array(batch.extra["advantages"]).ravel().tolist() == [0.5, -0.5]


def mean_logprob(model, prompt, sample) -> float:
    lp = student_logprobs(model, mx.array([prompt + sample]))[0]
    start = len(prompt) - 1
    return float(np.mean([lp[start + t, tok] for t, tok in enumerate(sample)]))


@pytest.mark.parametrize("advantages", [(1.0, -1.0), (-1.0, 1.0)])
def test_lti_step_raises_the_sample_with_the_higher_advantage(model, advantages):
    # As in sleep: only tonight's (zero-initialised) expert is trainable.
    mlx_lora.add_trainable_expert(model, 2, ["self_attn.q_proj", "self_attn.v_proj",
                                             "mlp.down_proj"], rank=4, scale=4.0)
    prompt, samples = [1, 2, 3, 4], [[10, 11, 12], [20, 21]]
    before = [mean_logprob(model, prompt, s) for s in samples]
    batch = objective.lti_batch(prompt, samples, list(advantages))
    loss, ntoks = objective.lti_loss(model, batch)
    assert int(ntoks.item()) == 5
    # The loss is -sum_i A_i * mean_t log pi(y_i,t) / group size.
    expected = -sum(a * b for a, b in zip(advantages, before)) / len(samples)
    assert loss.item() == pytest.approx(expected, rel=1e-4)

    step = nn.value_and_grad(model, lambda m, b: objective.lti_loss(m, b)[0])
    _, grads = step(model, batch)
    optim.SGD(learning_rate=0.05).update(model, grads)
    mx.eval(model.parameters())
    after = [mean_logprob(model, prompt, s) for s in samples]
    for adv, b, a in zip(advantages, before, after):
        assert (a > b) if adv > 0 else (a < b), (adv, b, a)
