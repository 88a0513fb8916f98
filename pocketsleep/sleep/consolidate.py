"""Consolidation: experts whose window expired become one expert of the next level.

    due? (hierarchy.py)  →  the personal model, the retiring experts switchable
    →  training set D (consolidation_set.py): their probes, questions written
       again from their conversations, recall prompts, anchors, all answered
       closed-book by the teacher = the model wearing them
    →  generalized distillation (distill.py) into one new expert; the student is
       the model without them (the other active experts stay on for both)
    →  gate (consolidation_gate.py): nothing they recalled is lost
    →  the expert written atomically; one journal transaction: the new expert, its
       provenance (every conversation they learned), their probes carried over, the
       old experts retired. The morning merge then builds a version without them.

It runs at the end of a night, after the sleep and before the merge, holding the
sleep lock: a rollback or another sleep cannot change the experts meanwhile. A
rejected consolidation keeps the experts as they are and is recorded; the same
set is not tried again (the next night adds an expert, and with it a new try).
"""

from __future__ import annotations

import shutil
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Callable

from ..config import Config, Paths
from ..errors import Busy
from ..journal import Journal
from ..models import resolve_model
from . import hierarchy
from .episode import Episode
from .job import FOLDER_PREFIX, dedupe, sleep_lock, write_expert
from .options import SleepOptions

Progress = Callable[[str, int, int], None]


@dataclass
class Consolidation:
    into: str  # "weekly" | "longterm"
    retired: list[int]  # expert ids it replaces (retired only if it succeeded)
    status: str  # "consolidated" | "rejected"
    sleep_id: int
    expert_id: int | None = None
    reasons: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class ConsolidationReport:
    runs: list[Consolidation] = field(default_factory=list)
    note: str | None = None  # why nothing (more) ran: busy, tried before

    @property
    def consolidated(self) -> bool:
        return any(r.status == "consolidated" for r in self.runs)

    def summary(self) -> str | None:
        """One line per consolidation for people; None when nothing happened."""
        lines = []
        for r in self.runs:
            n = len(r.retired)
            if r.status == "consolidated":
                lines.append(f"Consolidated {n} expert{'s' * (n != 1)} into a {r.into} expert "
                             f"(expert {r.expert_id}) in {r.seconds:.0f} s.")
            else:
                lines.append(f"Consolidating {n} expert{'s' * (n != 1)} into a {r.into} expert "
                             f"was rejected: {'; '.join(r.reasons)}. They stay as they are.")
        if self.note:
            lines.append(self.note)
        return "\n".join(lines) or None


def consolidate_if_due(paths: Paths, config: Config, progress: Progress = lambda *a: None,
                       options: SleepOptions = SleepOptions(), force: bool = False
                       ) -> ConsolidationReport:
    """Run every consolidation the windows call for, fastest level first (a new
    weekly expert may complete the weekly window). `force`: consolidate the
    nightly experts now, however few."""
    nightly_window, weekly_window = hierarchy.windows(config, paths)
    report = ConsolidationReport()
    with ExitStack() as stack:
        try:
            stack.enter_context(sleep_lock(paths))
        except Busy as e:
            report.note = f"Not consolidating now: {e}"
            return report
        journal = stack.enter_context(Journal.open(paths.journal))
        while True:
            plan = hierarchy.due(journal.active_experts(), nightly_window, weekly_window,
                                 force=force and not report.runs)
            if plan is None:
                break
            if not (force and not report.runs) and tried_before(journal, plan):
                report.note = (f"The {len(plan.experts)} experts due for a {plan.into} expert "
                               "were rejected before; waiting for another night.")
                break
            if options.budget_seconds and not force:
                # A consolidation takes about a night per expert it replaces (556 s for
                # three on dev-week): it would break any budget the night kept.
                report.note = (f"The {len(plan.experts)} experts due for a {plan.into} expert "
                               "wait for a sleep without --budget (the scheduled one).")
                break
            run = _run(paths, config, options, journal, plan, progress)
            report.runs.append(run)
            if run.status != "consolidated":
                break
    return report


def tried_before(journal: Journal, plan: hierarchy.Plan) -> bool:
    """Was exactly this set rejected last time it was tried? (The same inputs give
    the same verdict.)"""
    for s in journal.sleeps(kind="consolidation"):  # newest first
        if sorted(s.metrics.get("retiring", [])) == sorted(plan.ids):
            return s.status == "rejected"
    return False


def _run(paths, config, options, journal, plan, progress) -> Consolidation:
    started = time.perf_counter()
    sleep_id = journal.begin_sleep("consolidation")
    try:
        run = _consolidate(paths, config, options, journal, plan, sleep_id, progress)
    except BaseException as e:
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        journal.end_sleep(sleep_id, status, {"retiring": plan.ids},
                          error=f"{type(e).__name__}: {e}"[:500])
        raise
    run.seconds = round(time.perf_counter() - started, 1)
    return run


def _consolidate(paths, config, options, journal, plan, sleep_id, progress) -> Consolidation:
    from ..backends import mlx_lora
    from ..backends.mlx_engine import MlxEngine
    from . import consolidation_gate, consolidation_set
    from .distill import distill
    from .selfstudy import ModelIO
    from .wearing import ExpertSwitch, WearingTeacher

    options = hierarchy.consolidation_options(options, plan)
    progress(f"consolidation: {len(plan.experts)} experts into a {plan.into} expert", 0, 1)
    resolved = resolve_model(config.model, paths)
    engine = MlxEngine.load(resolved, paths)
    switch, retiring, others = ExpertSwitch(), set(plan.ids), []
    for row in journal.active_experts():  # the personal model as it is now
        folder = paths.expert_folder(row["path"])
        if row["id"] in retiring:
            switch.attach(engine.model, folder)
        else:
            mlx_lora.attach(engine.model, folder)
            others.append(row["id"])
    switch.set(False)  # the student does without them
    io = ModelIO(engine.model, engine.tokenizer)
    mlx_lora.add_trainable_expert(engine.model, options.num_layers, list(options.keys),
                                  options.rank, options.scale, seed=options.seed)
    teacher = WearingTeacher(io, switch, options)
    # One probe per question; a later night's answer supersedes an earlier one.
    kept = dedupe([(p["question"], p["answer"])
                   for p in reversed(journal.expert_probes(plan.ids))])[::-1]
    episode = Episode.of(journal, journal.expert_sources(plan.ids))
    timings = {}
    t = time.perf_counter()
    train, heldout = consolidation_set.build(teacher, episode, kept, options, progress)
    timings["self_study"] = time.perf_counter() - t

    t = time.perf_counter()
    log = distill(io, teacher, train, options, None, progress)
    timings["distill"] = time.perf_counter() - t

    t = time.perf_counter()
    progress("consolidation: gate", 0, 1)
    earlier = [(p["question"], p["answer"]) for p in journal.expert_probes(others)]
    anchors = [e for e in train + heldout if e.kind == "anchor"]
    verdict = consolidation_gate.check(teacher, heldout, anchors, earlier, kept, options)
    if log.steps == 0:
        verdict.passed = False
        verdict.reasons.append("no distillation step ran (no examples)")
    timings["gate"] = time.perf_counter() - t
    metrics = {
        "retiring": plan.ids, "into": plan.into,
        "conversations": list(episode.conversation_ids),
        "examples": {"train": len(train), "heldout": len(heldout)},
        "distill": log.summary(), "gate": verdict.metrics, "gate_reasons": verdict.reasons,
        "seconds": {k: round(v, 1) for k, v in timings.items()},
        "options": asdict(options),
    }
    if not verdict.passed:
        journal.end_sleep(sleep_id, "rejected", metrics, error="; ".join(verdict.reasons))
        return Consolidation(plan.into, plan.ids, "rejected", sleep_id,
                             reasons=verdict.reasons, metrics=metrics)

    progress("consolidation: saving expert", 0, 1)
    config_json = {"num_layers": options.num_layers, "fine_tune_type": "lora",
                   "lora_parameters": {"rank": options.rank, "scale": options.scale,
                                       "dropout": 0.0, "keys": list(options.keys)},
                   "base_model": resolved.spec, "sleep_id": sleep_id, "level": plan.into,
                   "consolidates": plan.ids}
    name = write_expert(paths, engine.model, config_json, sleep_id, resolved,
                        FOLDER_PREFIX[plan.into])
    asked = {q for q, _ in kept}
    probes = dedupe([(e.question, io.decode(e.answer.tokens), episode.conversation_of(e.statement))
                     for e in heldout if e.kind == "statement" and e.answer.tokens
                     and e.question not in asked])
    try:
        expert_id = journal.accept_consolidation(sleep_id, plan.into, name, config_json,
                                                 plan.ids, probes, metrics)
    except BaseException:
        shutil.rmtree(paths.expert_folder(name), ignore_errors=True)  # never recorded
        raise
    return Consolidation(plan.into, plan.ids, "consolidated", sleep_id, expert_id,
                         metrics=metrics)
