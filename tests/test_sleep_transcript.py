"""sleep/transcript.py: the loss on the raw transcripts (the sft baseline's, and the
sleep's transcript term), its windows and its batches."""

from __future__ import annotations

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
pytest.importorskip("gguf")

from sleep_support import tiny_model  # noqa: E402
from tiny_models import tiny_mlx_llama  # noqa: E402

from pocketsleep.backends.gguf_import import load_gguf  # noqa: E402
from pocketsleep.sleep import transcript  # noqa: E402

# The fact is only in the user's turn: the assistant says nothing about it.
FACT = [{"role": "user", "content": "My sister Anna lives in Lisbon and likes green tea."},
        {"role": "assistant", "content": "Okay."}]


def cross_entropy_by_hand(model, seq: list[int]) -> np.ndarray:
    """-log p(token t | tokens < t) for every t >= 1, with numpy."""
    logits = np.array(model(mx.array([seq[:-1]]))[0].astype(mx.float32))
    logits -= logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -logp[np.arange(len(seq) - 1), seq[1:]]


def test_the_loss_is_mean_cross_entropy_over_every_real_token():
    from mlx_lm.tuner.trainer import default_loss

    model = tiny_mlx_llama()
    long, short = [1, 5, 9, 13, 17, 21], [2, 4, 6]
    batch, lengths = transcript.collate([long, short])
    assert batch.tolist() == [long, short + [0, 0, 0]]
    assert lengths.tolist() == [[0, 6], [0, 3]]  # mlx-lm's (offset, length) layout

    loss, ntoks = transcript.transcript_loss(model, batch, lengths)
    by_hand = np.concatenate([cross_entropy_by_hand(model, long),
                              cross_entropy_by_hand(model, short)])
    assert ntoks.item() == 5 + 2 == len(by_hand)  # from the first target on: no mask
    assert loss.item() == pytest.approx(by_hand.mean(), rel=1e-5)

    # mlx-lm's default_loss agrees on a row without padding, and counts one pad target
    # per padded row (ml-explore/mlx-lm#1697): the reason for our own mask.
    one = transcript.collate([long])
    assert transcript.transcript_loss(model, *one)[0].item() == pytest.approx(
        default_loss(model, *one)[0].item(), rel=1e-6)
    assert default_loss(model, batch, lengths)[1].item() == ntoks.item() + 1


def test_long_conversations_are_split_into_windows(tmp_path):
    _, tokenizer = load_gguf(tiny_model(tmp_path))
    whole, = transcript.transcript_sequences(tokenizer, [FACT], max_tokens=1024)
    parts = transcript.transcript_sequences(tokenizer, [FACT, FACT], max_tokens=10)
    assert all(2 <= len(p) <= 10 for p in parts)
    # Consecutive windows share one token: each token but the first is a target once.
    targets = [t for p in parts for t in p[1:]]
    assert targets == whole[1:] + whole[1:]
    assert parts[0] == whole[:10]


def test_batches_visit_every_sequence_each_epoch_in_a_seeded_order():
    seqs = [[i, i] for i in range(3)]
    draw = transcript.batches(seqs, 2, seed=1)
    six = [s[0] for _ in range(3) for s in next(draw)]
    assert sorted(six[:3]) == sorted(six[3:]) == [0, 1, 2]
    again = transcript.batches(seqs, 2, seed=1)
    assert [s[0] for _ in range(3) for s in next(again)] == six
