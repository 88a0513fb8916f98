"""A consolidation's training set D: what the experts being consolidated know,
as the personal model wearing them says it, closed-book.

- their stored probes: the teacher's own answers, and the stored answer itself
  with the teacher's distribution at every token (teacher-forced), so what the
  gate will ask for is exactly what is distilled;
- questions written again from their source conversations (selfstudy's
  few-shot writer), kept when the teacher's answer is grounded in what the user
  said, as in a night: answers the experts never learned are not worth a place;
- the recall requests, about everything those conversations held;
- anchors: generic requests, answered by the same teacher, so that the model's
  general behaviour as it is now is held in place.

Held out for the gate: a share of the written questions (never trained on).
"""

from __future__ import annotations

import random
from typing import Callable

from .. import prompts
from . import questions, selfstudy
from .episode import Episode
from .options import SleepOptions
from .sampling import generate_batch
from .selfstudy import Example
from .wearing import WearingTeacher


def build(teacher: WearingTeacher, episode: Episode, kept: list[tuple[str, str]],
          options: SleepOptions, progress: Callable[[str, int, int], None] = lambda *a: None
          ) -> tuple[list[Example], list[Example]]:
    """Return (training examples, held-out examples). `kept`: the retiring experts'
    probes, (question, stored answer)."""
    io = teacher.student_io
    exchanges = episode.exchanges()
    progress("consolidation: writing questions", 0, 1)
    with teacher.wearing():
        written = questions.write_questions(io, [x.statement for x in exchanges],
                                            options.questions_per_statement, options.seed)
    asked, temps, meta = [], [], []

    def ask(kind: str, question: str, source: str, n: int) -> None:
        for j in range(n):  # greedy first, then sampled phrasings
            asked.append(prompts.closed_book(question))
            temps.append(0.0 if j == 0 else 0.7)
            meta.append((kind, question, source))

    for x, mine in zip(exchanges, written):
        for q in mine:
            ask("statement", q, x.statement, options.answers_per_question)
    said = " ".join(m["content"] for c in episode.conversations for m in c if m["role"] == "user")
    for q in prompts.RECALL_PROMPTS:
        ask("recall", q, said, 1)
    for q, a in kept:
        ask("probe", q, a, 1)

    progress("consolidation: teacher answers", 0, 1)
    answers = teacher.answer_many(asked, temps, options.seed)
    examples = [Example(kind, q, m, a, s if kind == "statement" else None)
                for (kind, q, s), m, a in zip(meta, asked, answers)
                if a.tokens and (kind == "probe" or
                                 selfstudy.usable_answer(io.decode(a.tokens), s, q,
                                                         negations=options.heed_negations))]
    probes = [e for e in examples if e.kind == "probe"]
    probes += [Example("probe", q, prompts.closed_book(q),
                       selfstudy.forced_answer(io, prompts.closed_book(q), io.text_ids(a),
                                               options.top_k, teacher))
               for q, a in kept if io.text_ids(a)]
    examples = [e for e in examples if e.kind != "probe"] + anchors(teacher, options)
    train, heldout = selfstudy.split_heldout(examples, options, random.Random(options.seed))
    return train + probes, heldout


def anchors(teacher: WearingTeacher, options: SleepOptions) -> list[Example]:
    io = teacher.student_io
    chosen = list(prompts.ANCHOR_PROMPTS)
    random.Random(options.seed).shuffle(chosen)
    chosen = chosen[: options.anchors]
    messages = [prompts.closed_book(q) for q in chosen]
    with teacher.wearing():
        answers = generate_batch(io.model, [io.chat_ids(m) for m in messages], io.eos_ids,
                                 options.anchor_tokens, [0.0] * len(chosen), top_k=options.top_k)
    return [Example("anchor", q, m, a) for q, m, a in zip(chosen, messages, answers) if a.tokens]
