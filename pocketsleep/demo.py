"""The scripted day of `pocketsleep demo`, and asking about it closed-book.

A short day in which the user mentions a few personal facts in passing (a dog, a
trip, a preference), as people do in chat, with the assistant's replies scripted
so the day is the same on every machine. The questions are scored the way
`pocketsleep eval` scores probes (any alias, whole word, case-insensitive).
"""

from __future__ import annotations

from dataclasses import dataclass

from .backends.base import GenerationOptions
from .config import Config, Paths
from .eval.scoring import judge
from .eval.suite import Probe
from .journal import Journal
from .prompts import closed_book

CONVERSATIONS: tuple[tuple[dict, ...], ...] = (
    (
        {"role": "user", "content": "I adopted a dog last weekend! Her name is Waffles "
                                    "and she's a corgi."},
        {"role": "assistant", "content": "Congratulations! Waffles is a perfect name for a "
                                         "corgi. How is she settling in?"},
        {"role": "user", "content": "Really well. She already sleeps at the foot of my bed."},
        {"role": "assistant", "content": "Sounds like Waffles has made herself at home."},
    ),
    (
        {"role": "user", "content": "Next month I'm flying to Lisbon for my sister's "
                                    "wedding. Any tips for packing light?"},
        {"role": "assistant", "content": "Lisbon is lovely then. Pack layers, comfortable "
                                         "shoes for the hills, and one outfit for the wedding."},
    ),
    (
        {"role": "user", "content": "Can you suggest an afternoon drink? I only drink "
                                    "oolong tea, never coffee."},
        {"role": "assistant", "content": "Then an oolong it is: a lightly roasted one suits "
                                         "a quiet afternoon."},
    ),
)

QUESTIONS: tuple[Probe, ...] = (
    Probe("What is my dog's name?", ("Waffles",)),
    Probe("What breed is my dog?", ("corgi",)),
    Probe("Which city am I flying to next month?", ("Lisbon",)),
    Probe("What kind of tea do I drink?", ("oolong",)),
)

# Greedy and short, as eval asks its probes: the same answer on every run.
ANSWER_OPTIONS = GenerationOptions(max_tokens=32, temperature=0.0, seed=0)


@dataclass(frozen=True)
class Answer:
    text: str
    correct: bool


def log_day(journal: Journal) -> list[int]:
    """Write the scripted day into the journal, pending for tonight's sleep."""
    return [journal.log_conversation(list(c), title=c[0]["content"][:40], source="demo")
            for c in CONVERSATIONS]


def ask_all(paths: Paths, config: Config, questions=QUESTIONS) -> list[Answer]:
    """Each question closed-book, through the normal engine path: the personal model
    of `paths` (base + the experts its sleeps accepted), opened and closed here so
    the sleep that follows has the memory to itself."""
    from .engines import open_engine

    engine = open_engine(paths, config)
    try:
        answers = []
        for probe in questions:
            text = engine.chat(closed_book(probe.question), ANSWER_OPTIONS).strip()
            answers.append(Answer(text, judge(probe, text).correct))
        return answers
    finally:
        engine.close()
