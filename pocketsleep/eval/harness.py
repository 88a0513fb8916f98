"""The evaluation protocol of DESIGN.md §5, for every method side by side.

For each method, in a fresh temporary data home of its own:
    measure general-text perplexity;
    for each day: log the day's conversations into the journal, run the method's
        night (timed, peak memory measured), then ask every probe of that day and
        of all earlier days, and the general probes, greedily;
    measure general-text perplexity again.
The result is one JSON-able dict (see `run_eval`); report.py prints and plots it.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from ..backends.base import Engine, GenerationOptions
from ..config import Config, Paths
from ..journal import Journal
from ..prompts import GENERAL_TEXT_PROMPT, closed_book
from .methods import History, LazyEngine, Method, MethodContext
from .scoring import judge, perplexity
from .suite import Suite

Progress = Callable[[str], None]


def general_text_messages() -> list[dict]:
    """How general_text is framed when its perplexity is measured (the same framing
    as the sleep gate's perplexity check)."""
    return closed_book(GENERAL_TEXT_PROMPT)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and (when installed) MLX: same seed, same run."""
    import importlib.util

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "mlx.core" in sys.modules or importlib.util.find_spec("mlx") is not None:
        try:
            import pocketsleep.backends  # noqa: F401  (fast BLAS before mlx loads)
            import mlx.core as mx
        except ImportError:  # pragma: no cover - a broken mlx install
            return
        mx.random.seed(seed)


class PeakMemory:
    """Peak resident memory of this process during a stretch of work (one night).

    On Linux, writing "5" to /proc/self/clear_refs resets the high-water mark that
    /proc/self/status reports as VmHWM. Elsewhere (or where that is refused) the
    figure is getrusage's peak of the whole process so far, which cannot be reset.
    """

    def __init__(self) -> None:
        self.source = "VmHWM" if self._status_kb("VmHWM") is not None else "getrusage"

    def reset(self) -> None:
        if self.source != "VmHWM":
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.source = "getrusage"

    def peak_mb(self) -> float:
        if self.source == "VmHWM":
            kb = self._status_kb("VmHWM")
            if kb is not None:
                return kb / 1024
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # kilobytes on Linux, bytes on macOS
        return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024

    @staticmethod
    def _status_kb(key: str) -> int | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        return None


def run_eval(
    suite: Suite,
    methods: list[type[Method]],
    *,
    config: Config = Config(),
    seed: int = 0,
    max_tokens: int = 32,
    engine_factory: Callable[[Paths, Config], Engine] | None = None,
    progress: Progress | None = None,
) -> dict:
    """Run every method of `methods` over `suite`; return the report dict.

    `engine_factory(paths, config)` opens the base engine (default: the model and
    engine `config` names, via open_engine, in a temporary home); tests inject a
    FakeEngine here. It is called at most once: all methods share the engine.
    """
    say = progress or (lambda line: None)
    with tempfile.TemporaryDirectory(prefix="pocketsleep-eval-") as tmp:
        root = Path(tmp)
        engine_home = Paths(root / "engine")

        def open_base() -> Engine:
            say(f"loading {config.model} ({config.engine})")
            if engine_factory is not None:
                return engine_factory(engine_home, config)
            from ..engines import open_engine

            return open_engine(engine_home.ensure(), config)

        shared = LazyEngine(open_base)
        options = GenerationOptions(max_tokens=max_tokens, temperature=0.0, seed=seed)
        results = {}
        memory = PeakMemory()
        try:
            for cls in methods:
                ctx = MethodContext(
                    paths=Paths(root / "homes" / cls.name).ensure(),
                    config=config, seed=seed, options=options, shared_engine=shared,
                )
                results[cls.name] = _run_method(cls, ctx, suite, memory, say)
            loaded = shared.loaded
            return {
                "suite": suite.name,
                "model": config.model,
                "model_name": loaded.model_label if loaded else None,
                "engine": loaded.name if loaded else config.engine,
                "seed": seed,
                "max_tokens": max_tokens,
                "days": len(suite.days),
                "probes": sum(len(d.probes) for d in suite.days),
                "general_probes": len(suite.general_probes),
                "general_text_request": GENERAL_TEXT_PROMPT,
                "peak_rss_source": memory.source,
                "methods": results,
            }
        finally:
            shared.close()


def _run_method(cls: type[Method], ctx: MethodContext, suite: Suite,
                memory: PeakMemory, say: Progress) -> dict:
    seed_everything(ctx.seed)  # each method starts from the same state, whatever ran before
    started = time.perf_counter()
    n_days = len(suite.days)
    method = cls(ctx)
    journal = Journal.open(ctx.paths.journal)
    try:
        ppl_before = _general_perplexity(method, suite)
        history: History = []
        retention: list[list[float | None]] = [[None] * n_days for _ in range(n_days)]
        recall_per_night: list[float] = []
        general_per_night: list[float | None] = []
        sleep_seconds: list[float] = []
        peak_rss_mb: list[float] = []
        answers: list[dict] = []
        last_stale = 0
        for n, day in enumerate(suite.days):
            tag = f"{cls.name}: day {n + 1}/{n_days} ({day.date})"
            for i, conversation in enumerate(day.conversations):
                title = f"{day.date} #{i + 1}"
                journal.log_conversation(conversation, title=title, source="eval")
                history.append((day.date, [dict(m) for m in conversation]))

            say(f"{tag}: night")
            memory.reset()
            t0 = time.perf_counter()
            method.night(day, journal)
            sleep_seconds.append(round(time.perf_counter() - t0, 3))
            peak_rss_mb.append(round(memory.peak_mb(), 1))

            n_probes = sum(len(d.probes) for d in suite.days[: n + 1])
            say(f"{tag}: {n_probes} probes" + (
                f" + {len(suite.general_probes)} general" if suite.general_probes else ""))
            right_tonight = stale_tonight = 0
            for d in range(n + 1):
                right = 0
                for probe in suite.days[d].probes:
                    reply = method.answer(probe.question, list(history))
                    verdict = judge(probe, reply)
                    right += verdict.correct
                    stale_tonight += verdict.stale
                    answers.append({"night": n + 1, "day": d + 1, "question": probe.question,
                                    "answer": reply, "correct": verdict.correct,
                                    "stale": verdict.stale})
                retention[d][n] = _fraction(right, len(suite.days[d].probes))
                right_tonight += right
            recall_per_night.append(_fraction(right_tonight, n_probes))
            last_stale = stale_tonight

            general_right = 0
            for probe in suite.general_probes:
                reply = method.answer(probe.question, list(history))
                verdict = judge(probe, reply)
                general_right += verdict.correct
                answers.append({"night": n + 1, "day": None, "question": probe.question,
                                "answer": reply, "correct": verdict.correct,
                                "stale": verdict.stale})
            general_per_night.append(
                _fraction(general_right, len(suite.general_probes)) if suite.general_probes else None)
            say(f"{tag}: recall {right_tonight}/{n_probes}" + (
                f", general {general_right}/{len(suite.general_probes)}"
                if suite.general_probes else ""))

        ppl_after = _general_perplexity(method, suite)
    finally:
        method.close()
        journal.close()
        if ctx.shared_engine.loaded is not None:
            ctx.shared_engine.loaded.detach_experts()  # leave it bare for the next method

    final = [a for a in answers if a["night"] == n_days and a["day"] is not None]
    final_right = sum(a["correct"] for a in final)
    ppl_change = (ppl_after / ppl_before - 1) if ppl_before and ppl_after else None
    return {
        "description": cls.description,
        "final_recall": _fraction(final_right, len(final)),
        "final_correct": final_right,
        "final_total": len(final),
        "today_recall": round(sum(retention[d][d] for d in range(n_days)) / n_days, 4),
        "stale_answers": last_stale,
        "general_accuracy": general_per_night[-1],
        "general_per_night": general_per_night,
        "ppl_before": _round(ppl_before),
        "ppl_after": _round(ppl_after),
        "ppl_change": _round(ppl_change, 6),
        "retention": retention,
        "recall_per_night": recall_per_night,
        "sleep_seconds": sleep_seconds,
        "peak_rss_mb": peak_rss_mb,
        "seconds": round(time.perf_counter() - started, 3),
        "answers": answers,
    }


def _general_perplexity(method: Method, suite: Suite) -> float | None:
    if not suite.general_text:
        return None
    return perplexity(method.score(general_text_messages(), suite.general_text))


def _fraction(right: int, total: int) -> float:
    return round(right / total, 4) if total else 0.0


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


#: Keys whose values are timings or memory: they differ between identical runs.
TIMING_KEYS = ("sleep_seconds", "peak_rss_mb", "seconds")
