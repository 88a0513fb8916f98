"""One method through the day/night protocol of DESIGN.md §5, night by night.

    measure general-text perplexity;
    for each day: log the day's conversations, run the method's night (timed, peak
        memory measured, its own verdict kept), then ask every probe of that day and
        of all earlier days, and the general probes, greedily;
    measure general-text perplexity again.

The figures grow night by night and can be read at any point (`figures()`), so a
run stopped during night 4 still has nights 1 to 3. Whole-run figures (final
recall, today's recall, perplexity change, ...) stay null until the method has
finished: a figure over the nights so far would read like the final one.
"""

from __future__ import annotations

import copy
import time
from typing import Callable

from ..journal import Journal
from ..prompts import GENERAL_TEXT_PROMPT, closed_book
from .measure import PeakMemory, seed_everything
from .methods import History, Method, MethodContext
from .scoring import judge, perplexity
from .suite import Day, Suite

Progress = Callable[[str], None]

#: Keys that stay null until every night of the method has run.
WHOLE_RUN_KEYS = ("final_recall", "final_correct", "final_total", "today_recall",
                  "stale_answers", "general_accuracy", "ppl_after", "ppl_change")


def general_text_messages() -> list[dict]:
    """How general_text is framed when its perplexity is measured (the same framing
    as the sleep gate's perplexity check)."""
    return closed_book(GENERAL_TEXT_PROMPT)


class MethodRun:
    """One method over one suite: runs its nights and keeps every figure."""

    def __init__(self, cls: type[Method], ctx: MethodContext, suite: Suite,
                 memory: PeakMemory, say: Progress):
        self.cls, self.ctx, self.suite, self.memory, self.say = cls, ctx, suite, memory, say
        n_days = len(suite.days)
        self.retention: list[list[float | None]] = [[None] * n_days for _ in range(n_days)]
        self.recall_per_night: list[float] = []
        self.stale_per_night: list[int] = []
        self.general_per_night: list[float | None] = []
        self.sleep_seconds: list[float] = []
        self.peak_rss_mb: list[float] = []
        self.nights: list[dict] = []  # what each night's own report said (the gate's verdict)
        self.answers: list[dict] = []
        self.history: History = []
        self.ppl_before: float | None = None
        self.ppl_after: float | None = None
        self.complete = False
        self.started = time.perf_counter()

    def run(self, night_done: Callable[[dict], None] = lambda figures: None) -> dict:
        """Run every night; `night_done(figures so far)` after each. The figures."""
        seed_everything(self.ctx.seed)  # each method starts from the same state
        method = self.cls(self.ctx)
        journal = Journal.open(self.ctx.paths.journal)
        try:
            self.ppl_before = self._general_perplexity(method)
            for n, day in enumerate(self.suite.days):
                tag = f"{self.cls.name}: day {n + 1}/{len(self.suite.days)} ({day.date})"
                self._night(method, journal, n, day, tag)
                self._ask_probes(method, n, tag)
                night_done(self.figures())
            self.ppl_after = self._general_perplexity(method)
        finally:
            method.close()
            journal.close()
            if self.ctx.shared_engine.loaded is not None:
                self.ctx.shared_engine.loaded.detach_experts()  # bare for the next method
        self.complete = True
        return self.figures()

    def _night(self, method: Method, journal: Journal, n: int, day: Day, tag: str) -> None:
        for i, conversation in enumerate(day.conversations):
            journal.log_conversation(conversation, title=f"{day.date} #{i + 1}", source="eval",
                                     at=f"{day.date}T12:00:00+00:00")  # the suite's day
            self.history.append((day.date, [dict(m) for m in conversation]))
        self.say(f"{tag}: night")
        self.memory.reset()
        t0 = time.perf_counter()
        verdict = method.night(day, journal)
        self.sleep_seconds.append(round(time.perf_counter() - t0, 3))
        self.peak_rss_mb.append(round(self.memory.peak_mb(), 1))
        if verdict is not None:
            self.nights.append({"night": n + 1, **verdict})

    def _ask_probes(self, method: Method, n: int, tag: str) -> None:
        """Every probe of days 1..n+1, then the general probes."""
        days, general = self.suite.days, self.suite.general_probes
        n_probes = sum(len(d.probes) for d in days[: n + 1])
        self.say(f"{tag}: {n_probes} probes" + (f" + {len(general)} general" if general else ""))
        right_tonight = stale_tonight = 0
        for d in range(n + 1):
            right = 0
            for probe in days[d].probes:
                verdict = self._ask(method, probe, night=n + 1, day=d + 1)
                right += verdict.correct
                stale_tonight += verdict.stale
            self.retention[d][n] = _fraction(right, len(days[d].probes))
            right_tonight += right
        self.recall_per_night.append(_fraction(right_tonight, n_probes))
        self.stale_per_night.append(stale_tonight)

        general_right = sum(self._ask(method, p, night=n + 1, day=None).correct for p in general)
        self.general_per_night.append(_fraction(general_right, len(general)) if general else None)
        self.say(f"{tag}: recall {right_tonight}/{n_probes}"
                 + (f", general {general_right}/{len(general)}" if general else ""))

    def _ask(self, method: Method, probe, night: int, day: int | None):
        reply = method.answer(probe.question, list(self.history))
        verdict = judge(probe, reply)
        self.answers.append({"night": night, "day": day, "question": probe.question,
                             "answer": reply, "correct": verdict.correct, "stale": verdict.stale})
        return verdict

    def _general_perplexity(self, method: Method) -> float | None:
        if not self.suite.general_text:
            return None
        return perplexity(method.score(general_text_messages(), self.suite.general_text))

    def figures(self) -> dict:
        """The method's result so far (a copy: it is written out while the run goes on)."""
        return copy.deepcopy({
            "description": self.cls.description,
            "complete": self.complete,
            "nights_done": len(self.recall_per_night),
            **(self._whole_run() if self.complete else dict.fromkeys(WHOLE_RUN_KEYS)),
            "general_per_night": self.general_per_night,
            "ppl_before": _round(self.ppl_before),
            "retention": self.retention,
            "recall_per_night": self.recall_per_night,
            "stale_per_night": self.stale_per_night,
            "sleep_seconds": self.sleep_seconds,
            "peak_rss_mb": self.peak_rss_mb,
            "seconds": round(time.perf_counter() - self.started, 3),
            "nights": self.nights,
            "answers": self.answers,
        })

    def _whole_run(self) -> dict:
        n_days = len(self.suite.days)
        final = [a for a in self.answers if a["night"] == n_days and a["day"] is not None]
        final_right = sum(a["correct"] for a in final)
        before, after = self.ppl_before, self.ppl_after
        return {
            "final_recall": _fraction(final_right, len(final)),
            "final_correct": final_right,
            "final_total": len(final),
            "today_recall": round(sum(self.retention[d][d] for d in range(n_days)) / n_days, 4),
            "stale_answers": self.stale_per_night[-1],
            "general_accuracy": self.general_per_night[-1],
            "ppl_after": _round(after),
            "ppl_change": _round(after / before - 1 if before and after else None, 6),
        }


def _fraction(right: int, total: int) -> float:
    return round(right / total, 4) if total else 0.0


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)
