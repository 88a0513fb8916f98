"""The evaluation protocol of DESIGN.md §5, for every method side by side.

Each method runs in a fresh temporary data home of its own, all of them sharing one
engine (method_run.py: the day/night loop of one method). The result is one
JSON-able dict (see `run_eval`), handed out as it grows: a run of every method
takes hours on a CPU, and one stopped near the end must not lose the rest.
report.py prints and plots it; result_file.py writes it and reads it back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..backends.base import Engine, GenerationOptions
from ..config import Config, Paths
from ..files import left_by_dead_writer, temp_prefix
from ..prompts import GENERAL_TEXT_PROMPT
from .measure import PeakMemory
from .method_run import MethodRun
from .methods import LazyEngine, Method, MethodContext
from .report import method_line
from .result_file import finished_methods
from .suite import Suite

Progress = Callable[[str], None]
Update = Callable[[dict], None]

#: Keys whose values are timings or memory: they differ between identical runs.
TIMING_KEYS = ("sleep_seconds", "peak_rss_mb", "seconds")
#: Each run's temporary data homes are in `<tmp>/.pocketsleep-eval.<pid>-<random>`.
TEMP_NAME = "pocketsleep-eval"


def run_eval(
    suite: Suite,
    methods: list[type[Method]],
    *,
    config: Config = Config(),
    seed: int = 0,
    max_tokens: int = 32,
    engine_factory: Callable[[Paths, Config], Engine] | None = None,
    progress: Progress | None = None,
    on_update: Update | None = None,
    resume_from: dict | None = None,
) -> dict:
    """Run every method of `methods` over `suite`; return the report dict.

    `engine_factory(paths, config)` opens the base engine (default: the model and
    engine `config` names, via open_engine, in a temporary home); tests inject a
    FakeEngine here. It is called at most once: all methods share the engine.

    `on_update(result so far)` is called after every night of every method and after
    every method, with `"complete": false` (the method running has only the nights
    it finished, and `"complete": false` of its own), and once at the end with
    `"complete": true`. `resume_from` is an earlier result of the same settings: its
    complete methods are kept as they are, not run again.
    """
    say = progress or (lambda line: None)
    update = on_update or (lambda result: None)
    settings = run_settings(suite, config, seed, max_tokens)
    kept = finished_methods(resume_from, settings) if resume_from else {}
    for home in sweep_killed_runs():
        say(f"removed {home}, left by a run that was killed")
    with tempfile.TemporaryDirectory(prefix=temp_prefix(TEMP_NAME)) as tmp:
        root = Path(tmp)
        shared = LazyEngine(lambda: _open_base(root / "engine", config, engine_factory, say))
        options = GenerationOptions(max_tokens=max_tokens, temperature=0.0, seed=seed)
        memory = PeakMemory()
        results: dict[str, dict] = {}

        def snapshot(complete: bool = False) -> dict:
            return _result(settings, shared.loaded, resume_from, memory, results, complete)

        def night_done(figures: dict, name: str) -> None:
            results[name] = figures
            update(snapshot())

        try:
            for cls in methods:
                if cls.name in kept:
                    results[cls.name] = kept[cls.name]
                    say(f"{cls.name}: complete in the earlier run, not run again")
                else:
                    ctx = MethodContext(paths=Paths(root / "homes" / cls.name).ensure(),
                                        config=config, seed=seed, options=options,
                                        shared_engine=shared)
                    run = MethodRun(cls, ctx, suite, memory, say)
                    results[cls.name] = run.run(lambda f, name=cls.name: night_done(f, name))
                say(method_line(cls.name, results[cls.name], len(suite.general_probes)))
                update(snapshot())
            final = snapshot(complete=True)
            update(final)
            return final
        finally:
            shared.close()


def sweep_killed_runs() -> list[Path]:
    """Delete the temporary homes that killed runs left behind (a SIGKILL skips
    TemporaryDirectory's cleanup; each holds journals and model versions). Only a
    home whose run's process is gone: an evaluation running beside this one keeps
    its own."""
    gone = []
    for home in Path(tempfile.gettempdir()).glob(f".{TEMP_NAME}.*"):
        if home.is_dir() and left_by_dead_writer(home, TEMP_NAME):
            shutil.rmtree(home, ignore_errors=True)
            gone.append(home)
    return gone


def _open_base(home: Path, config: Config, engine_factory, say: Progress) -> Engine:
    say(f"loading {config.model} ({config.engine})")
    if engine_factory is not None:
        return engine_factory(Paths(home), config)
    from ..engines import open_engine

    return open_engine(Paths(home).ensure(), config)


def run_settings(suite: Suite, config: Config, seed: int, max_tokens: int) -> dict:
    """What makes two runs' figures comparable (a resumed run must match them all)."""
    return {
        "suite": suite.name,
        "suite_digest": suite_digest(suite),
        "model": config.model,
        "engine_requested": config.engine,
        "seed": seed,
        "max_tokens": max_tokens,
        "days": len(suite.days),
        "probes": sum(len(d.probes) for d in suite.days),
        "general_probes": len(suite.general_probes),
    }


def suite_digest(suite: Suite) -> str:
    """A short hash of everything in the suite: an edited suite is another suite."""
    text = json.dumps(dataclasses.asdict(suite), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _result(settings: dict, engine: Engine | None, earlier: dict | None,
            memory: PeakMemory, methods: dict[str, dict], complete: bool) -> dict:
    # With every method kept from an earlier run no engine loads: say what that one had.
    earlier = earlier or {}
    model_name = engine.model_label if engine else earlier.get("model_name")
    engine_name = engine.name if engine else earlier.get("engine", settings["engine_requested"])
    return {
        "complete": complete,
        **settings,
        "model_name": model_name,
        "engine": engine_name,
        "general_text_request": GENERAL_TEXT_PROMPT,
        "peak_rss_source": memory.source,
        "methods": dict(methods),
    }
