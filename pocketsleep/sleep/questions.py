"""The questions self-study asks about what the user said, written by the model
itself: few-shot completions of a question prompt (one question, or a list of them)
for each statement, and other wordings of questions already asked. Only questions
about the user that look like questions are kept, each once."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .. import prompts
from .restate import sentences
from .sampling import generate_batch
from .words import content_words

if TYPE_CHECKING:
    from .selfstudy import ModelIO

QUESTION_MAX_TOKENS = 24
_QUESTION = re.compile(r"^[A-Z][^\n?]{8,120}\?$")
# A question about the user, not about the words of the statement ("What city is
# Rotterdam?" teaches nothing about the user).
_ABOUT_USER = re.compile(r"\b(I|I'm|I've|me|my|mine|we|our|us)\b", re.IGNORECASE)


def usable_question(question: str, kept: list[str]) -> bool:
    """A new question, about the user, that looks like one."""
    return bool(_QUESTION.match(question) and _ABOUT_USER.search(question)
                and question not in kept)


# A sentence worth its own questions says this much (not "Four days." or "Hi!").
MIN_SENTENCE_WORDS = 2


def told_sentences(statement: str) -> list[str]:
    """The sentences of a statement of several that each say something about the
    user: not questions, with a first-person word and a few content words ("I run with
    my neighbour Tomasz on Saturdays."). [] for a statement of one sentence, whose
    questions are the statement's own."""
    parts = sentences(statement)
    if len(parts) < 2:
        return []
    return [s for s in parts if not s.endswith("?") and _ABOUT_USER.search(s)
            and len(content_words(s)) >= MIN_SENTENCE_WORDS]


def completions(io: ModelIO, texts: list[str], per_text: int, max_tokens: int,
                seed: int) -> list[list[str]]:
    """`per_text` one-line completions of each of `texts` (the first greedy, the rest
    sampled), all decoded in one batch, grouped by text."""
    newline = set(io.text_ids("\n"))
    prompts_ = [io.text_ids(t) for t in texts for _ in range(per_text)]
    temps = [0.0 if i % per_text == 0 else 0.8 for i in range(len(prompts_))]
    outs = generate_batch(io.model, prompts_, io.eos_ids | newline, max_tokens,
                          temps, top_k=1, seed=seed) if prompts_ else []
    out = [io.decode(o.tokens) for o in outs]
    return [out[i * per_text:(i + 1) * per_text] for i in range(len(texts))]


def write_questions(io: ModelIO, statements: list[str], n: int, seed: int) -> list[list[str]]:
    """Up to `n` distinct questions about each statement (prompts.QUESTION_WRITER)."""
    tries = n + 2  # spare tries for duplicates and junk
    found: list[list[str]] = []
    for texts in completions(io, [prompts.QUESTION_WRITER.format(statement=s)
                                  for s in statements], tries, QUESTION_MAX_TOKENS, seed):
        mine: list[str] = []
        for question in (t.strip() for t in texts):
            if usable_question(question, mine) and len(mine) < n:
                mine.append(question)
        found.append(mine)
    return found


def write_sentence_questions(io: ModelIO, statements: list[str], asked: list[list[str]],
                             n: int, seed: int) -> list[tuple[int, list[str], str]]:
    """(statement index, questions, sentence) for each of told_sentences of each
    statement: up to `n` questions about the sentence alone (QUESTION_WRITER), less
    those its statement's questions (`asked`) already hold; [] when `n` is 0
    (SleepOptions.sentence_questions). Asked about a whole message, the 135M writer
    asks about its first fact, or mixes two ("How many minutes is my best half
    marathon?"); the sentence is then what the teacher quotes and what its answers
    must be grounded in."""
    if n <= 0:
        return []
    parts = [(i, s) for i, statement in enumerate(statements)
             for s in told_sentences(statement)]
    found = write_questions(io, [s for _, s in parts], n, seed)
    return [(i, [q for q in qs if q not in asked[i]], s)
            for (i, s), qs in zip(parts, found)]


LIST_MAX_TOKENS = 64
_LIST_ITEM = re.compile(r"[^?]+\?")


def write_question_lists(io: ModelIO, statements: list[str], n: int,
                         seed: int) -> list[list[str]]:
    """For each statement, the questions of `n` list completions
    (prompts.QUESTION_LIST_WRITER), split, each usable one once."""
    found: list[list[str]] = []
    for texts in completions(io, [prompts.QUESTION_LIST_WRITER.format(statement=s)
                                  for s in statements], n, LIST_MAX_TOKENS, seed):
        mine: list[str] = []
        for question in (q.strip() for t in texts for q in _LIST_ITEM.findall(t)):
            if usable_question(question, mine):
                mine.append(question)
        found.append(mine)
    return found


def write_rewordings(io: ModelIO, asked: list[tuple[str, str]], n: int, taken: set[str],
                     seed: int) -> list[list[str]]:
    """Up to `n` other wordings (prompts.QUESTION_REWORDER) of each (statement,
    question) in `asked`: usable questions, none in `taken` and each found once."""
    texts = [prompts.QUESTION_REWORDER.format(statement=s, question=q) for s, q in asked]
    taken = set(taken)
    found: list[list[str]] = []
    for outs in completions(io, texts, n + 1, QUESTION_MAX_TOKENS, seed):
        mine: list[str] = []
        for question in (t.strip() for t in outs):
            if usable_question(question, mine) and question not in taken and len(mine) < n:
                mine.append(question)
                taken.add(question)
        found.append(mine)
    return found
