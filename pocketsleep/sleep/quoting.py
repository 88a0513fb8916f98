"""A teacher that quotes: its answers about a statement lean towards the words of it.

A 135M teacher with the statement right before the question still answers from
imagination: told "I run with my neighbour Tomasz on Saturdays" and asked "What is my
neighbour's name?", it says "Kiera" (bench/RESULTS.md, twelfth round). Tonight's
teacher is meant to be the model *knowing* the day, so its answers to statement
questions are generated with a bonus of `SleepOptions.quote_bias` nats on the tokens
that would spell, next, one of the statement's content words the question does not
already hold: the first token of each such word, or its next token once the answer
has begun spelling it, until the answer has said the word. (Favoured for ever, a
word was said again and again: "10k 10k 10k 10k".) The bonus is part of the
teacher's distribution, so the kept top-k targets carry it too (what the student
learns is the quoting teacher), and answers still pass the grounding filter.
"""

from __future__ import annotations

from typing import Callable

import pocketsleep.backends  # noqa: F401  (fast BLAS before mlx loads)
import mlx.core as mx
import numpy as np


def spellings(text_ids: Callable[[str], list[int]], words: set[str]
              ) -> list[tuple[list[int], list[int]]]:
    """For each of `words` (as written), its token spellings after a space and at the
    start of a text."""
    out = [(text_ids(" " + w), text_ids(w)) for w in sorted(words)]
    return [(spaced, bare) for spaced, bare in out if spaced and bare]


def _holds(tokens: list[int], spelling: list[int]) -> bool:
    n = len(spelling)
    return any(tokens[i:i + n] == spelling for i in range(len(tokens) - n + 1))


class QuoteBias:
    """An mlx-lm logits processor for one answer: `bias` added to the logits of the
    tokens that continue the spelling of one of `words` ((after a space, at the
    start) spellings of each) that the answer is in the middle of, or else of those
    that begin one, for the words the answer has not said yet. A word's spelling at
    the start of a text only starts the answer (elsewhere it would glue words
    together: "sistertea"). It keeps the prompt's length from its first call, so one
    instance serves one answer."""

    def __init__(self, words: list[tuple[list[int], list[int]]], bias: float):
        self.words = words
        self.bias = bias
        self.prompt_length: int | None = None

    def favoured(self, said: list[int]) -> set[int]:
        """The tokens to favour after the answer so far, `said`."""
        todo = [(spaced, bare) for spaced, bare in self.words
                if not (_holds(said, spaced) or _holds(said, bare))]
        going = {spaced[j] for spaced, _ in todo
                 for j in range(1, min(len(spaced), len(said) + 1)) if said[-j:] == spaced[:j]}
        going |= {bare[len(said)] for _, bare in todo
                  if 0 < len(said) < len(bare) and said == bare[:len(said)]}
        if going:
            return going
        return {spaced[0] for spaced, _ in todo} | ({bare[0] for _, bare in todo}
                                                   if not said else set())

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        ids = tokens.tolist()  # the prompt, then the answer so far
        if self.prompt_length is None:
            self.prompt_length = len(ids)
        favoured = self.favoured(ids[self.prompt_length:])
        if not favoured:
            return logits
        bonus = np.zeros(logits.shape[-1], np.float32)
        bonus[sorted(favoured)] = self.bias
        return logits + mx.array(bonus)
