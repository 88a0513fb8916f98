"""Dreaming, part 1: the model writes practice about what it learned tonight.

For each candidate the policy picks a writer (prompts.DREAM_WRITERS):
    a request about one of tonight's statements, written few-shot by the model
    (question, topic request, scenario), and
    its answer, written by the teacher (selfstudy.Teacher, the night's own): the
    pre-sleep model with that statement and its reply in context (teacher_views'
    first view, the one a 135M model answers best from), at seeding's answer length.
"as of <date>" updates ask an earlier night's stored probe about the same thing,
when there is one, and answer it with tonight's fact, dated: rehearsing that makes
the new value replace the old one. Both steps run with tonight's expert off and the
diversifier on (diversify.py). Answers not grounded in what the user said are
dropped, as in self-study.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from ... import prompts
from ...backends.mlx_lora import without_trainable_expert
from .. import selfstudy
from ..episode import Episode, Exchange
from ..sampling import Generated, generate_batch
from ..selfstudy import ModelIO
from ..words import content_words

REQUEST_MAX_TOKENS = 24
WRITER_TEMPERATURE = 0.8  # the writers sample: many phrasings are the point
_REQUEST = re.compile(r"^[A-Z][^\n]{8,160}$")


@dataclass
class Dream:
    arm: str  # "<kind>/<template>": the writer (policy.ARMS)
    request: str  # what the student is asked, closed-book
    content: str  # the answer it rehearses
    conversation_ids: tuple[int, ...]
    score: float | None = None  # gradient norm (select.py)
    selected: bool = False
    # The teacher's tokens for `content` with their top-k distributions (the soft
    # targets); not stored: a replayed dream is rebuilt from its text.
    answer: Generated | None = field(default=None, repr=False, compare=False)

    @property
    def kind(self) -> str:
        return self.arm.split("/")[0]

    def row(self) -> dict:
        """As the journal stores it (Journal.add_dreams)."""
        return {"kind": self.kind, "template": self.arm, "prompt": self.request,
                "content": self.content, "score": self.score, "selected": self.selected,
                "conversation_ids": self.conversation_ids}


def usable_request(arm: str, text: str) -> bool:
    """A request, not a continuation of the few-shot pattern or a fragment."""
    if not _REQUEST.match(text) or "Statement" in text or ":" in text:
        return False
    return text.endswith("?") if arm.startswith(("qa/", "update/")) else True


# An earlier probe: its question, and the conversations its text may come from.
EarlierProbe = tuple[str, tuple[int, ...]]


def related_probe(statement: str, earlier: list[EarlierProbe]) -> EarlierProbe | None:
    """An earlier night's probe about the same thing as `statement` (the most content
    words in common), for an "as of" update to answer anew."""
    words = content_words(statement)
    best, best_overlap = None, 0
    for probe in earlier:
        overlap = len(content_words(probe[0]) & words)
        if overlap > best_overlap:
            best, best_overlap = probe, overlap
    return best


def _date_of(episode: Episode, exchange: Exchange) -> str:
    cid = episode.conversation_of(exchange.statement)
    return episode.dates[episode.conversation_ids.index(cid)] if cid in episode.conversation_ids else ""


def write_requests(io: ModelIO, slots: list[tuple[str, Exchange]],
                   earlier: list[EarlierProbe], seed: int) -> list[EarlierProbe | None]:
    """One request per (arm, exchange) slot, all written in one batch, with the
    earlier conversations it quotes (an update's probe); None where the writer
    produced nothing usable."""
    fixed = [related_probe(x.statement, earlier) if arm.startswith("update/") else None
             for arm, x in slots]
    todo = [i for i, f in enumerate(fixed) if f is None]
    ids = [io.text_ids(prompts.DREAM_WRITERS[slots[i][0]][1].format(
        statement=slots[i][1].statement)) for i in todo]
    newline = set(io.text_ids("\n"))
    outs = generate_batch(io.model, ids, io.eos_ids | newline, REQUEST_MAX_TOKENS,
                          [WRITER_TEMPERATURE] * len(ids), top_k=1, seed=seed) if ids else []
    for i, out in zip(todo, outs):
        text = io.decode(out.tokens).strip()
        fixed[i] = (text, ()) if usable_request(slots[i][0], text) else None
    return fixed


# Words that start a sentence and are no name: lower-cased after "As of <date>, ".
_PLAIN_OPENERS = {"Your", "You", "The", "It", "My", "He", "She", "They", "We", "That", "This"}


def dated(prefix: str, answer: str) -> str:
    first, _, rest = answer.partition(" ")
    return prefix + (first.lower() + " " + rest if first in _PLAIN_OPENERS else answer)


def write_dreams(io: ModelIO, teacher, episode: Episode, arms: list[str],
                 earlier: list[EarlierProbe], seed: int,
                 carried: tuple[int, ...] = ()) -> list[Dream]:
    """Candidates for the given arms (one each), statements taken in turn. Call with
    the diversifier on; `carried` are the conversations it brings in (a boosted
    expert's), which every dream then counts among its sources: `forget` of any of
    them deletes it."""
    exchanges = episode.exchanges()
    if not exchanges or not arms:
        return []
    random.Random(seed).shuffle(exchanges)
    slots = [(arm, exchanges[i % len(exchanges)]) for i, arm in enumerate(arms)]
    with without_trainable_expert(io.model):
        requests = write_requests(io, slots, earlier, seed)
        asked = [(arm, x, r) for (arm, x), r in zip(slots, requests) if r]
        views = [selfstudy.teacher_views(x, r[0])[0] for _, x, r in asked]
        answers = teacher.answer_many(views, [0.0] * len(views), seed) if views else []
    dreams, seen = [], set()
    for (arm, x, (request, quoted)), answer in zip(asked, answers):
        text = io.decode(answer.tokens).strip()
        if not answer.tokens or not selfstudy.usable_answer(
                text, x.statement, request, negations=teacher.options.heed_negations):
            continue
        if arm.startswith("update/"):
            text = dated(prompts.DREAM_UPDATE_PREFIX.format(date=_date_of(episode, x)), text)
            answer = forced_update(io, teacher, x, request, text, answer)
        source = episode.conversation_of(x.statement)
        sources = tuple(sorted({source, *quoted, *carried} - {None}))
        if source is not None and (request, text) not in seen:
            seen.add((request, text))
            dreams.append(Dream(arm, request, text, sources, answer=answer))
    return dreams


def forced_update(io: ModelIO, teacher, exchange: Exchange, request: str, text: str,
                  answer: Generated) -> Generated:
    """A dated update's text as the teacher scores it from the statement in context
    (its words are the teacher's answer with "As of <date>, " in front)."""
    ids = io.text_ids(text) + ([answer.end_token] if answer.end_token is not None else [])
    view = selfstudy.teacher_views(exchange, request)[0]
    return selfstudy.forced_answer(teacher.io, view, ids, answer.topk_ids.shape[1])
