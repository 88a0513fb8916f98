"""One night's sleep, start to finish: the paper's memory consolidation.

    select the episode  →  parameter expansion (a new expert)  →  self-study set D
    →  generalized distillation  →  gate  →  persist (or keep everything pending)

Nothing is promoted half-written: the expert is written to a temporary folder and
renamed into place, then one journal transaction records it, its provenance and its
probes, and marks the conversations consolidated. A killed sleep leaves the previous
state as it was; the next sleep marks it interrupted and starts again.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from ..config import Config, Paths
from ..faults import checkpoint
from ..files import exclusive_lock, fsync_tree
from ..journal import Journal
from ..models import resolve_model
from . import updates
from .episode import Episode
from .options import SleepOptions

# Time kept back from the budget for the gate and writing the expert: on a dev-week
# day here the gate takes 35-50 s and writing the expert (MLX and GGUF) a few more.
GATE_RESERVE_SECONDS = 60
# Share of the rest that self-study may use before it stops taking conversations
# (the one it is on is finished): training gets the other half. On a dev-week day
# self-study takes about a third of a night (83 of 304 s, bench/RESULTS.md).
SELF_STUDY_SHARE = 0.5


@dataclass
class Basis:
    """What a new expert is learned on top of, checked against and recorded as.

    Tonight's sleep wears every active expert, keeps their probes and records a
    nightly expert. A rebuild after `forget` (pocketsleep/forgetting.py) wears all
    but the experts trained on the forgotten conversation and records, through
    `record`, a replacement of one of them."""

    wear: list[dict]  # expert rows, oldest first
    earlier: list[tuple[str, str]]  # probes that must not become less likely
    level: str = "nightly"
    # (journal, sleep_id, folder name, config, probes, metrics, rehearsed) -> expert id
    record: Callable[..., int] | None = None
    # Earlier conversations tonight's teacher rereads to score their probes
    # (SleepOptions.earlier_anchor_targets = "conversation"), cut as any episode's;
    # like tonight's, they must still be learnable when the night ends.
    reread: Episode | None = None
    # Earlier probe -> the turns of the reread conversation it was written from.
    probe_sources: dict[tuple[str, str], tuple[dict, ...]] = field(default_factory=dict)
    # What tonight holds in place as earlier anchors: the earlier probes, and the
    # rehearsal questions stored beside them (SleepOptions.rehearsal_questions),
    # oldest first. None: the probes alone.
    anchored: list[tuple[str, str]] | None = None
    # Earlier probe -> the conversations it holds (Journal.probe_origins): what the
    # new expert is recorded as rehearsing when it holds the probe in place.
    origins: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    # Earlier probes tonight's episode takes back (sleep/updates.py): left out of
    # `earlier` and `anchored`; if the night is kept, the journal records them taken
    # back in the conversation that did (Journal.accept_expert).
    superseded: list[tuple[str, str]] = field(default_factory=list)
    # The words tonight's episode takes back (updates.taken_back).
    taken_back: frozenset[str] = frozenset()

    @property
    def held(self) -> list[tuple[str, str]]:
        """The earlier questions tonight's self-study anchors."""
        return self.earlier if self.anchored is None else self.anchored

    def rehearsed(self, options: SleepOptions, dream_log: dict) -> set[int]:
        """The conversations whose probes (earlier_anchors) or dreams (dreaming's
        replay, unless the gate undid it) the new expert was trained on: `forget` of
        any of them rebuilds it too (Journal.experts_trained_on)."""
        from .selfstudy import chosen_earlier

        out = {c for probe in chosen_earlier(self.held, options)
               for c in self.origins.get(probe, ())}
        if "undone" not in dream_log:
            out.update(dream_log.get("rehearsed_from", ()))
        return out

    @classmethod
    def tonight(cls, journal: Journal, options: SleepOptions) -> "Basis":
        wear = journal.active_experts()
        basis = cls(wear, journal.active_probes(),
                    anchored=journal.active_probes(("heldout", "rehearsal")),
                    origins=journal.probe_origins([r["id"] for r in wear],
                                                  ("heldout", "rehearsal")))
        if options.earlier_anchor_targets == "conversation":
            written_from = journal.probe_conversations()
            basis.reread = Episode.of(journal, sorted(set(written_from.values())))
            turns = dict(zip(basis.reread.conversation_ids, basis.reread.conversations))
            basis.probe_sources = {probe: turns[cid] for probe, cid in written_from.items()
                                   if cid in turns}
        return basis

    def heeding(self, episode: Episode, options: SleepOptions) -> "Basis":
        """This basis without the earlier probes `episode` takes back
        (SleepOptions.heed_negations; sleep/updates.py). A rebuild (`record`) relearns
        old conversations: it takes back nothing that later nights learned."""
        if not options.heed_negations or self.record is not None:
            return self
        words = frozenset(updates.taken_back(episode.statements()))
        if not words:
            return self
        gone = updates.superseded(list(dict.fromkeys(self.earlier + self.held)), words)
        kept = [p for p in self.earlier if p not in gone]
        return replace(self, earlier=kept, superseded=gone, taken_back=words,
                       anchored=None if self.anchored is None
                       else [p for p in self.anchored if p not in gone])


# An expert's folder is named after its level and the sleep that made it.
FOLDER_PREFIX = {"nightly": "night", "weekly": "weekly", "longterm": "longterm"}


@dataclass
class SleepReport:
    status: str  # "succeeded" | "rejected" | "nothing to learn" | "dry run"
    sleep_id: int | None = None
    expert_id: int | None = None
    conversations: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0


def sleep_lock(paths: Paths):
    """Never two sleeps at once (a scheduled one and a "sleep now", say)."""
    return exclusive_lock(paths.ensure().home / "sleep.lock",
                          "another sleep is already running; wait for it to finish "
                          "(`pocketsleep status` shows it)")


def run_sleep(paths: Paths, config: Config, options: SleepOptions = SleepOptions(),
              progress: Callable[[str, int, int], None] = lambda *a: None,
              dry_run: bool = False) -> SleepReport:
    started = time.perf_counter()
    with sleep_lock(paths), Journal.open(paths.journal) as journal:
        checkpoint("sleep.locked")
        journal.check_intact()  # a night writes experts, probes and statuses into it
        episode = Episode.from_journal(journal)
        if episode.empty:
            return SleepReport("nothing to learn")
        if dry_run:
            return SleepReport("dry run", conversations=list(episode.conversation_ids), metrics={
                "statements": len(episode.statements()),
                "episode_tokens_estimate": episode.token_estimate()})
        sleep_id = journal.begin_sleep()
        checkpoint("sleep.begun")
        sweep_unrecorded_experts(paths, journal, sleep_id)
        try:
            report = learn_episode(paths, config, options, journal, episode, sleep_id,
                                   started, progress, Basis.tonight(journal, options))
        except BaseException as e:
            status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            journal.end_sleep(sleep_id, status, {}, error=f"{type(e).__name__}: {e}"[:500])
            raise
        report.seconds = round(time.perf_counter() - started, 1)
        return report


def learn_episode(paths, config, options, journal, episode, sleep_id, started, progress,
                  basis: Basis):
    from ..backends import mlx_lora
    from ..backends.mlx_engine import MlxEngine
    from . import gate
    from .distill import distill
    from .dreaming import dream
    from .selfstudy import ModelIO, Teacher, study
    from .transcript import episode_transcripts
    from .wearing import BareTeacher, ExpertSwitch

    basis = basis.heeding(episode, options)
    resolved = resolve_model(config.model, paths)
    engine = MlxEngine.load(resolved, paths)
    earlier = ExpertSwitch()
    for row in basis.wear:  # the personal model as it is tonight
        earlier.attach(engine.model, paths.expert_folder(row["path"]))
    io = ModelIO(engine.model, engine.tokenizer)
    # Parameter expansion: tonight's expert, zero-initialised, the rest frozen.
    mlx_lora.add_trainable_expert(engine.model, options.num_layers, list(options.keys),
                                  options.rank, options.scale, seed=options.seed)
    timings = {}
    deadline = study_until = None
    if options.budget_seconds:
        deadline = started + options.budget_seconds - GATE_RESERVE_SECONDS
        if basis.record is None:  # a rebuild relearns all its conversations or none
            study_until = started + SELF_STUDY_SHARE * (deadline - started)
    t = time.perf_counter()
    teacher = (Teacher(io, options) if options.teacher_wears_experts
               else BareTeacher(io, earlier, options))
    whole = episode
    episode, train, heldout = study(io, teacher, whole, options, progress, basis.held,
                                    study_until, basis.probe_sources)
    deferred = list(whole.conversation_ids[len(episode.conversation_ids):])
    timings["self_study"] = time.perf_counter() - t

    t = time.perf_counter()
    said = (episode_transcripts(io.tokenizer, episode.conversations)
            if options.transcript_weight else [])
    log = distill(io, teacher, train, options, deadline, progress, said)
    checkpoint("sleep.distilled")
    timings["distill"] = time.perf_counter() - t

    t = time.perf_counter()  # Sleep II: dreaming, into the same expert
    # Seeding's expert, to fall back on if the gate rejects it with dreaming on top
    # (none to fall back on when distillation took no step: it is all zeros).
    seeded = (mlx_lora.trainable_snapshot(io.model)
              if options.dream and options.dream_undo and log.steps else None)
    dream_log = dream(paths, io, teacher, episode, train, heldout, options, journal, basis,
                      sleep_id, deadline, progress)
    timings["dream"] = time.perf_counter() - t

    t = time.perf_counter()
    # Drift is measured on the anchors meant to stay put: an earlier probe whose
    # target comes from its reread conversation is meant to move.
    anchors = [e for e in train + heldout if e.kind == "anchor"
               and not (e.earlier and basis.reread is not None)]
    verdict = judge(io, gate, heldout, anchors, basis, options, seeded, dream_log,
                    deadline, progress)
    if "undone" in dream_log:
        journal.unselect_dreams(sleep_id)
    if log.steps == 0:
        # Fix: with no distillation step (the budget spent before training, or no
        # examples) the expert is all zeros, yet the gate could pass it (nothing drifts,
        # and with no held-out questions nothing is compared), and the conversations
        # were marked consolidated with nothing learned. They stay pending instead.
        verdict.passed = False
        verdict.reasons.append("no distillation step ran (no examples, or the budget "
                               "was spent before training)")
    if basis.record is None:  # tonight's episode, read as pending and not private
        withdrawn = withdrawn_during_sleep(journal, episode, basis.reread)
        if withdrawn:
            verdict.passed = False
            verdict.reasons.append(
                f"conversation{'s' * (len(withdrawn) > 1)} {', '.join(map(str, withdrawn))} "
                "became private or forgotten while the night ran; nothing learned from "
                "tonight's episode is kept")
    timings["gate"] = time.perf_counter() - t
    # What the studied statements took back (a budget may have left some for later).
    retired = updates.retractions(basis.superseded, episode)
    metrics = {
        "conversations": list(episode.conversation_ids),
        # Pending conversations the budget left for the next night.
        "deferred": deferred,
        "examples": {"train": len(train), "heldout": len(heldout)},
        "distill": log.summary(), "dream": dream_log,
        "gate": verdict.metrics, "gate_reasons": verdict.reasons,
        "seconds": {k: round(v, 1) for k, v in timings.items()},
        # Earlier probes tonight's statements took back (updates.py).
        "superseded": [q for q, _, _ in retired],
        "options": asdict(options),
    }
    if not verdict.passed:
        journal.end_sleep(sleep_id, "rejected", metrics, error="; ".join(verdict.reasons))
        return SleepReport("rejected", sleep_id, conversations=list(episode.conversation_ids),
                           reasons=verdict.reasons, metrics=metrics)

    progress("saving expert", 0, 1)
    config_json = {"num_layers": options.num_layers, "fine_tune_type": "lora",
                   "lora_parameters": {"rank": options.rank, "scale": options.scale,
                                       "dropout": 0.0, "keys": list(options.keys)},
                   "base_model": resolved.spec, "sleep_id": sleep_id}
    name = write_expert(paths, engine.model, config_json, sleep_id, resolved,
                        FOLDER_PREFIX[basis.level])
    checkpoint("sleep.expert_written")
    # Each probe names the conversation it was written from: `forget` finds it there.
    probes = dedupe([(e.question, io.decode(e.answer.tokens), episode.conversation_of(e.statement))
                     for e in heldout if e.kind != "anchor" and e.answer.tokens])
    probes += [(e.question, io.decode(e.answer.tokens), episode.conversation_of(e.statement),
                "rehearsal") for e in rehearsal_set(train, options.rehearsal_questions)]
    rehearsed = basis.rehearsed(options, dream_log)
    if basis.record is not None:
        expert_id = basis.record(journal, sleep_id, name, config_json, probes, metrics,
                                 rehearsed)
    else:
        expert_id = journal.accept_expert(sleep_id, "nightly", name, config_json,
                                          episode.conversation_ids, probes, metrics,
                                          learned_up_to=episode.last_message_id,
                                          rehearsed=rehearsed, taken_back=retired)
    checkpoint("sleep.accepted")
    return SleepReport("succeeded", sleep_id, expert_id, list(episode.conversation_ids),
                       metrics=metrics)


def judge(io, gate, heldout, anchors, basis: Basis, options: SleepOptions, seeded,
          dream_log: dict, deadline: float | None, progress):
    """The gate's verdict on tonight's expert. Dreaming rehearses the expert seeding
    trained, and the gate judges the two together. Given `seeded` (its weights before
    dreaming: options.dream_undo), when the gate rejects them it judges seeding's
    expert alone, so that a night whose rehearsal went too far (on dev-week, lost
    quiz answers) keeps what seeding learned instead of nothing; the caller then
    unselects the night's dreams so that none is replayed as if learned. Off by
    default: it kept more nights but ended the reworded week lower (bench/RESULTS.md,
    eighth round). Then, with options.scale_back, a rejected expert is judged at
    that fraction of its strength (scaled_back)."""
    from ..backends.mlx_lora import restore_trainable

    started = time.perf_counter()
    progress("gate", 0, 1)
    unseen = gate.unseen_generic(io, options)

    def check():
        return gate.check(io, heldout, anchors, basis.earlier, options, unseen=unseen)

    verdict = check()
    took = time.perf_counter() - started

    def time_for_another() -> bool:  # a second gate, then writing the expert
        return deadline is None or (
            deadline + GATE_RESERVE_SECONDS - time.perf_counter() >= 2 * took)

    rehearsed = dream_log.get("rehearsal", {}).get("steps", 0) > 0
    if not verdict.passed and seeded is not None and rehearsed:
        if not time_for_another():
            dream_log["undo_skipped"] = "too little of the budget left for a second gate"
            return verdict
        progress("gate: seeding alone", 0, 1)
        restore_trainable(io.model, seeded)
        dream_log["undone"] = {"reasons": verdict.reasons, "gate": verdict.metrics}
        verdict = check()
    if not verdict.passed and options.scale_back and time_for_another():
        progress("gate: expert scaled back", 0, 1)
        verdict = scaled_back(io, verdict, options.scale_back, check)
    return verdict


def scaled_back(io, rejected, factor: float, check):
    """The gate's verdict on tonight's expert at `factor` of its strength, where the
    full one was `rejected` by a check of what it harms (drift, the quiz, perplexity,
    earlier nights) while its held-out questions improved; a smaller step in the same
    direction harms less and still learns some. The scaled expert stays in the model
    if it passes (the one written); otherwise the full one is put back and `rejected`
    stands. Either verdict's metrics say what was tried ("scaled_back")."""
    from ..backends.mlx_lora import restore_trainable, scale_trainable, trainable_snapshot
    from .gate import heldout_not_improved

    before, after = (rejected.metrics.get(k) or {} for k in ("before", "after"))
    if heldout_not_improved(before, after):
        return rejected  # it learned nothing to keep part of
    full = trainable_snapshot(io.model)
    scale_trainable(io.model, factor)
    second = check()
    if second.passed:
        second.metrics["scaled_back"] = {"factor": factor, "passed": True,
                                         "full_reasons": rejected.reasons}
        return second
    restore_trainable(io.model, full)
    rejected.metrics["scaled_back"] = {"factor": factor, "passed": False,
                                       "reasons": second.reasons}
    return rejected


def withdrawn_during_sleep(journal: Journal, episode: Episode,
                          reread: Episode | None = None) -> list[int]:
    """Fix: a conversation the user marked private (or forgot) in the chat while the
    night was running had already been read, and was learned anyway: recorded as a
    source of the new expert and consolidated, private flag and all. Which of the
    episode's conversations, and of the earlier ones reread, are no longer
    learnable now."""
    out = []
    for cid in episode.conversation_ids + (reread.conversation_ids if reread else ()):
        conversation = journal.conversation(cid)
        if conversation.private or conversation.status == "forgotten":
            out.append(cid)
    return out


def dedupe(probes: list[tuple]) -> list[tuple]:
    """One probe per question (the first)."""
    seen, out = set(), []
    for probe in probes:
        if probe[0] not in seen:
            seen.add(probe[0])
            out.append(probe)
    return out


def rehearsal_set(train: list, n: int) -> list:
    """Up to n of tonight's training statement questions, one example each (the first
    the set holds), taken from the statements in turn so that each statement is
    among them."""
    by_statement: dict[str, list] = {}
    seen = set()
    for e in train:
        if e.kind == "statement" and e.answer.tokens and e.question not in seen:
            seen.add(e.question)
            by_statement.setdefault(e.statement, []).append(e)
    queues = list(by_statement.values())
    out = []
    while len(out) < n and any(queues):
        for queue in queues:
            if queue and len(out) < n:
                out.append(queue.pop(0))
    return out


def sweep_unrecorded_experts(paths: Paths, journal: Journal, sleep_id: int) -> list[str]:
    """Fix: a sleep killed after renaming its expert into place but before the journal
    recorded it left a complete expert folder, trained on the user's conversations,
    that nothing refers to: never worn, never pruned, out of `forget`'s reach, kept
    for good (the next sleep writes under its own, new number). Remove folders named
    after an earlier sleep (`night-0012`, `weekly-0015`) that the journal holds no
    expert for. Callers hold the sleep lock: no other sleep is writing one."""
    if not paths.experts.is_dir():
        return []
    recorded = journal.expert_paths()
    earlier = {s.id for s in journal.sleeps() if s.id != sleep_id}
    removed = []
    for folder in paths.experts.iterdir():
        prefix, _, number = folder.name.rpartition("-")
        if (folder.is_dir() and prefix and number.isdigit() and int(number) in earlier
                and folder.name not in recorded):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def write_expert(paths: Paths, model, config_json: dict, sleep_id: int, resolved,
                 prefix: str = "night") -> str:
    """Write the trained expert atomically; return its folder name (as the journal
    stores it): `night-0012`, or `weekly-0015` for a consolidation."""
    from ..backends import mlx_lora

    experts = paths.private_subdir(paths.experts)
    name = f"{prefix}-{sleep_id:04d}"
    tmp = experts / f".tmp-{name}"
    # Fix: a failed or killed write left its temporary folder (a half-written expert
    # of the user's conversations) behind for good, as each night has its own name.
    # Sweep every leftover (the sleep lock is held: no other writer), and clean up
    # after a failure here.
    for old in experts.glob(".tmp-*"):
        shutil.rmtree(old, ignore_errors=True)
    try:
        mlx_lora.save_trainable_expert(model, tmp, config_json)
        checkpoint("expert.adapter_written")
        if resolved.format == "gguf":
            # The llama.cpp engine (chat on CPUs) wears the expert as a GGUF LoRA.
            from ..backends.gguf_lora import write_expert_gguf

            write_expert_gguf(tmp, resolved.path)
        fsync_tree(tmp)
        checkpoint("expert.fsynced")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = experts / name
    shutil.rmtree(final, ignore_errors=True)  # a leftover of an interrupted earlier try
    os.rename(tmp, final)
    return name
