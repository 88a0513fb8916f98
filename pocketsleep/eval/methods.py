"""The methods `pocketsleep eval` compares, one small class each.

The harness drives every method through the same day/night loop (DESIGN.md §5):

    method = METHODS[name](ctx)          # ctx: a fresh data home, settings, engine
    for each day:
        (the harness logs the day's conversations into `journal`)
        method.night(day, journal)       # timed; peak memory measured; may return
                                         # a verdict (the gate's), kept in `nights`
        method.answer(question, history) # every probe so far + the general probes
    method.score(messages, general_text) # perplexity, before the first night and after the last
    method.close()

`night` is where a method learns (or not); `answer` is how it is asked. `history`
is everything said so far in the suite, oldest first, as (date, messages) pairs: only
a method that *is* the in-context baseline may look at it. The others must answer
from what `night` left them (weights, experts), closed-book.

Adding a method is one class with `@register`. `sft` (naive LoRA fine-tuning on the
raw transcripts, the baseline sleep must beat on retention) and `sleep` (and its
ablations) are below.

The engine is shared by all methods of a run (loading a model once), so a method
that attaches experts must leave it bare again: the harness calls
`engine.detach_experts()` after `close()` as a safety net.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

from ..backends.base import Engine, GenerationOptions
from ..config import Config, Paths
from ..errors import InputError
from ..journal import Journal
from ..prompts import closed_book, in_context, render_history
from .suite import Day

#: What has been said so far in the suite, oldest first: (date, messages) pairs.
History = list[tuple[str, list[dict]]]


class LazyEngine:
    """One engine for the whole run, opened on first use (no model loads if no
    method ever asks)."""

    def __init__(self, opener: Callable[[], Engine]):
        self._opener = opener
        self._engine: Engine | None = None

    def get(self) -> Engine:
        if self._engine is None:
            self._engine = self._opener()
        return self._engine

    @property
    def loaded(self) -> Engine | None:
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


@dataclass
class MethodContext:
    """What a method gets: its own fresh data home, settings and the shared engine."""

    paths: Paths  # a fresh, temporary data home: this method's alone
    config: Config  # config.model / config.engine: the model spec and engine asked for
    seed: int
    options: GenerationOptions  # greedy, a few dozen tokens, seeded
    shared_engine: LazyEngine = field(repr=False)

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def engine_name(self) -> str:
        return self.config.engine

    @property
    def engine(self) -> Engine:
        """The base model, loaded on first use and shared with the other methods."""
        return self.shared_engine.get()


class Method:
    """One way of remembering: what happens at night, and how it is asked by day."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, ctx: MethodContext):
        self.ctx = ctx

    @property
    def engine(self) -> Engine:
        return self.ctx.engine

    def night(self, day: Day, journal: Journal) -> dict | None:
        """Learn from the day; `journal` already holds its conversations (pending).
        A method whose night can refuse what it learned returns its verdict (a JSON-able
        dict with at least `status` and `reasons`), kept in the result's `nights`.
        The default does nothing: no sleep."""
        return None

    def answer(self, question: str, history: History) -> str:
        """The answer to `question`; by default closed-book, with no past in context."""
        return self.generate(closed_book(question))

    def score(self, messages: list[dict], text: str) -> list[float]:
        """Per-token log-probabilities of `text` as the reply to `messages`, as this
        method's model sees it (for the general-text perplexity)."""
        return self.engine.score(messages, text)

    def generate(self, messages: list[dict]) -> str:
        return self.engine.chat(messages, self.ctx.options)

    def close(self) -> None:
        """Free what the method holds; leave the shared engine without experts."""


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if not cls.name or cls.name in METHODS:
        raise ValueError(f"method name {cls.name!r} is empty or taken")
    METHODS[cls.name] = cls
    return cls


@register
class ClosedBook(Method):
    name = "none"
    description = "no sleep: the base model, closed book"


@register
class InContext(Method):
    name = "icl"
    description = "no sleep: every past conversation of the suite in the prompt"

    def answer(self, question: str, history: History) -> str:
        text = render_history([m for _, m in history], [d for d, _ in history])
        return self.generate(in_context(text, question))


@register
class NaiveSft(Method):
    """Each night, a new LoRA expert trained on the day's raw transcripts (next-token
    cross-entropy, every token, a fixed number of steps) and kept without a gate
    (eval/sft.py); by day, the base engine wearing every night's expert."""

    name = "sft"
    description = "naive LoRA fine-tuning on the raw transcripts, no gate"

    def __init__(self, ctx: MethodContext):
        super().__init__(ctx)
        self.experts: list[Path] = []  # each night's expert folder, oldest first
        self.losses: list[list[float]] = []  # each night's training losses

    def night(self, day: Day, journal: Journal) -> None:
        from .sft import SftOptions, sft_night

        n = len(self.losses) + 1
        done = sft_night(self.ctx.paths, self.ctx.config, day.conversations, self.experts,
                         night=n, options=SftOptions(seed=self.ctx.seed + n - 1))
        self.losses.append(done.losses)
        if done.expert is not None:
            self.experts.append(done.expert)
            self.engine.attach_expert(done.expert)

    def close(self) -> None:
        if self.ctx.shared_engine.loaded is not None:
            self.engine.detach_experts()


class Sleep(Method):
    """The nightly sleep job at night; by day, the base engine wearing every expert
    the job has accepted so far (rejected nights add nothing)."""

    name = "sleep"
    description = "the nightly sleep job; answers with its experts attached"

    def sleep_options(self):
        """The night's SleepOptions: the defaults with this method's ablation."""
        from ..sleep import SleepOptions
        from ..sleep.options import ABLATIONS

        return SleepOptions(seed=self.ctx.seed).but(**ABLATIONS[self.name])

    def night(self, day: Day, journal: Journal) -> dict:
        from ..engines import wear_experts
        from ..sleep import run_sleep
        from .verdicts import night_verdict

        self.last_report = run_sleep(self.ctx.paths, self.ctx.config, self.sleep_options())
        self.engine.detach_experts()
        wear_experts(self.engine, journal, self.ctx.paths)
        return night_verdict(self.last_report)

    def close(self) -> None:
        if self.ctx.shared_engine.loaded is not None:
            self.engine.detach_experts()


def _register_sleep_ablations() -> None:
    """One method per objective ablation of the sleep job (`sleep-no-lti`, ...)."""
    from ..sleep.options import ABLATIONS

    register(Sleep)
    for variant in ABLATIONS:
        if variant != "sleep":
            register(type(variant.replace("-", "_"), (Sleep,), {
                "name": variant, "description": f"sleep, ablation: {variant[6:]}"}))


_register_sleep_ablations()


def method_classes(names: list[str]) -> list[type[Method]]:
    """The classes for `names`, in order; unknown or repeated names are input errors."""
    if not names:
        raise InputError(f"no methods given; choose from: {', '.join(METHODS)}")
    seen = set()
    out = []
    for name in names:
        if name not in METHODS:
            raise InputError(f"unknown method '{name}'; known methods: {', '.join(METHODS)}")
        if name in seen:
            raise InputError(f"method '{name}' is listed twice")
        seen.add(name)
        out.append(METHODS[name])
    return out


def parse_methods(spec: str) -> list[type[Method]]:
    """'none,icl' -> [ClosedBook, InContext]."""
    return method_classes([n.strip() for n in spec.split(",") if n.strip()])
