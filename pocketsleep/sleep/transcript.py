"""The day's own words: next-token cross-entropy on the raw transcripts.

The `sft` baseline of `pocketsleep eval` is this loss alone. The sleep can add it as
one more term of its objective (SleepOptions.transcript_weight), with the anchors and
the gate around it: distillation teaches the teacher's answers to the questions it
wrote, and a 135M teacher writes few of them, while the transcript says every fact
in the user's own words.

The loss has mlx-lm's `(model, batch, lengths) -> (loss, ntoks)` shape and batches
use its layout, so mlx-lm's own loop and evaluation could run it too.
"""

from __future__ import annotations

import random
from typing import Iterator, Sequence

import numpy as np

import pocketsleep.backends  # noqa: F401  (fast BLAS before mlx loads)
import mlx.core as mx
import mlx.nn as nn

from .. import control_tokens

# A conversation longer than this is trained as consecutive windows (nothing the user
# said is cut off, and one long day cannot blow up memory).
WINDOW_TOKENS = 1024


def transcript_sequences(tokenizer, conversations: Sequence[Sequence[dict]],
                         max_tokens: int) -> list[list[int]]:
    """Each conversation as the model sees a chat: its chat template, every turn,
    no generation prompt; split into windows of at most `max_tokens`. Windows overlap
    by one token, so every token but the first is a training target exactly once."""
    out = []
    controls = control_tokens.texts_of(tokenizer)  # a turn forged in a message is text
    stride = max(1, max_tokens - 1)
    for conversation in conversations:
        ids = list(tokenizer.apply_chat_template(
            control_tokens.plain_messages(conversation, controls), tokenize=True))
        out += [ids[i:i + max_tokens] for i in range(0, len(ids) - 1, stride)]
    return out


def collate(sequences: Sequence[Sequence[int]]) -> tuple[mx.array, mx.array]:
    """mlx-lm's batch layout: rows right-padded with 0, and per row (offset, length).
    The offset is 0: no prompt is masked, the loss covers the whole transcript."""
    rows = np.zeros((len(sequences), max(len(s) for s in sequences)), np.int32)
    for i, s in enumerate(sequences):
        rows[i, :len(s)] = s
    return mx.array(rows), mx.array([[0, len(s)] for s in sequences])


def transcript_loss(model, batch: mx.array, lengths: mx.array) -> tuple[mx.array, mx.array]:
    """Mean next-token cross-entropy over the real tokens of each row.

    mlx-lm's `default_loss`, except for the mask's upper bound: it keeps steps
    <= length, which reaches one past the last real token (ml-explore/mlx-lm#1697)
    and would train every padded row to predict the pad id 0 after its transcript.
    """
    inputs, targets = batch[:, :-1], batch[:, 1:]
    logits = model(inputs)
    steps = mx.arange(1, targets.shape[1] + 1)  # index of each target in its row
    mask = mx.logical_and(steps >= lengths[:, 0:1], steps < lengths[:, 1:])
    ce = nn.losses.cross_entropy(logits, targets) * mask
    ntoks = mask.sum()
    return ce.astype(mx.float32).sum() / ntoks, ntoks


def batches(sequences: list[list[int]], batch_size: int, seed: int) -> Iterator[list[list[int]]]:
    """Endless batches: every sequence once per epoch, in a seeded shuffled order.
    (mlx-lm's iterate_batches drops the remainder and needs batch_size sequences: a
    day with three conversations would lose one, or fail.)"""
    rng = random.Random(seed)
    order: list[int] = []
    while True:
        batch = []
        while len(batch) < batch_size:
            if not order:
                order = list(range(len(sequences)))
                rng.shuffle(order)
            batch.append(sequences[order.pop()])
        yield batch


def episode_transcripts(tokenizer, conversations: Sequence[Sequence[dict]]) -> list[list[int]]:
    """An episode's conversations for the transcript term: what the user and the
    model said, rendered as the `sft` baseline renders a suite's day."""
    turns = [[m for m in c if m["role"] != "system"] for c in conversations]
    return transcript_sequences(tokenizer, [t for t in turns if t], WINDOW_TOKENS)
