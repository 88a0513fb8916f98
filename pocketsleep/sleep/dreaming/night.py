"""Dreaming, one night: Sleep II, after knowledge seeding and before the gate.

    sweep unusable old dreams  →  the policy picks writers  →  write candidates with
    an earlier expert or noise switched on  →  trial updates (RL reward)  →  keep
    top-k by gradient norm + m random  →  rehearse them with replayed earlier dreams
    →  store dreams and the updated policy in the journal

Trains the same expert as seeding; the gate then judges both together.
"""

from __future__ import annotations

import random
import time
from typing import Callable, Collection

from ...journal import Journal
from ..episode import Episode
from ..options import SleepOptions
from ..selfstudy import Example, ModelIO, Teacher
from ..updates import says_any
from . import diversify
from .generate import Dream, write_dreams
from .policy import DreamPolicy
from .rehearse import rehearse
from .select import choose, gradient_norms, held_item, sft_item, soft_item
from .trials import probe_items, run_trials


def dream(paths, io: ModelIO, teacher: Teacher, episode: Episode, train: list[Example],
          heldout: list[Example], options: SleepOptions, journal: Journal, basis,
          sleep_id: int,
          deadline: float | None = None,
          progress: Callable[[str, int, int], None] = lambda *a: None) -> dict:
    """Dream about `episode` into the model's trainable expert; return the summary
    the sleep report keeps under metrics["dream"]."""
    if not options.dream:
        return {"ran": False}
    started = time.perf_counter()
    if deadline is not None and started > deadline:
        return {"ran": False, "why": "the sleep's budget was spent before dreaming"}
    stop_at = started + options.dream_seconds
    stop_at = min(stop_at, deadline) if deadline is not None else stop_at
    rng = random.Random(options.seed)
    seconds: dict[str, float] = {}
    journal.sweep_dreams()
    policy = DreamPolicy.from_journal(journal)

    # 1. Write candidates, diversified.
    t = time.perf_counter()
    progress("dreaming: writing", 0, 1)
    arms = policy.allocate(options.dream_candidates, rng)
    diversifier, switched_on, boosted = diversify.pick(io.model, basis.wear,
                                                       paths.expert_folder, options, rng)
    # A boosted expert's knowledge, and an earlier probe's question, can end up in a
    # dream: their conversations count among its sources (forget finds it there).
    carried = tuple(journal.expert_sources([boosted["id"]])) if boosted else ()
    with switched_on:
        dreams = write_dreams(io, teacher, episode, arms, earlier_probes(journal, basis),
                              options.seed, carried)
    seconds["write"] = time.perf_counter() - t
    anchors = [(io.chat_ids(e.student_messages), e.answer.answer_ids, e.answer.topk_ids,
                e.answer.topk_logprobs) for e in train if e.kind == "anchor"]
    k = anchors[0][2].shape[1] if anchors else options.top_k
    items = [dream_item(io, d, k, options) for d in dreams]

    # 2. RL: trial updates on a few candidates (drawn from the policy, as they were).
    t = time.perf_counter()
    trials = []
    if dreams and time.perf_counter() < stop_at:
        progress("dreaming: trials", 0, 1)
        picked = rng.sample(range(len(dreams)), min(options.dream_trials, len(dreams)))
        trials = run_trials(io.model, [(dreams[i].arm, items[i]) for i in picked],
                            probe_items(io, heldout), options.dream_lr)
    updated = policy.update([(x["arm"], x["reward"]) for x in trials], options.dream_policy_lr)
    seconds["trials"] = time.perf_counter() - t

    # 3. Select: gradient norm (or at random, the ablation).
    t = time.perf_counter()
    kept = keep_best(io, dreams, items, options, rng, stop_at, progress)
    seconds["select"] = time.perf_counter() - t

    # 4. Rehearse, with replay.
    t = time.perf_counter()
    replayed, replayed_ids = (replay_items(io, journal, options, rng, k, basis.taken_back)
                              if kept else ([], []))
    log = rehearse(io.model, [items[i] for i in kept] + replayed, anchors, options,
                   stop_at, progress)
    # Every conversation a rehearsed dream holds (tonight's, carried, replayed): the
    # expert is recorded as rehearsing the earlier ones (job.Basis.rehearsed).
    rehearsed_from = sorted({c for i in kept for c in dreams[i].conversation_ids}
                            | set(journal.dream_conversations(replayed_ids)))
    seconds["rehearse"] = time.perf_counter() - t

    # 5. Keep the dreams (not those of a conversation withdrawn meanwhile) and the policy.
    stored = [d for d in dreams if not withdrawn(journal, d)]
    journal.add_dreams(sleep_id, [d.row() for d in stored])
    journal.record_dream_policy(sleep_id, updated.preferences, updated.rounded(), trials)
    return {**summary(dreams, kept, replayed, diversifier, options, trials, policy, updated,
                      log, seconds, started), "rehearsed_from": rehearsed_from}


def keep_best(io, dreams: list[Dream], items: list[tuple], options, rng, stop_at,
              progress) -> list[int]:
    """Score the candidates and mark the kept ones; return their indices."""
    if not dreams or time.perf_counter() > stop_at:
        return []
    progress("dreaming: scoring", 0, 1)
    if options.dream_gradient_select:
        scores = gradient_norms(io, items)
    else:
        scores = [rng.random() for _ in dreams]
    kept = choose(scores, options.dream_keep_top, options.dream_keep_random, rng)
    for i, d in enumerate(dreams):
        d.score = round(scores[i], 5) if options.dream_gradient_select else None
        d.selected = i in kept
    return kept


def earlier_probes(journal: Journal, basis) -> list[tuple[str, tuple[int, ...]]]:
    """The stored probes of the experts worn tonight, each with the conversations its
    text may come from: the one it was written from, or, when unknown, every
    conversation its expert learned."""
    origins = journal.probe_origins([r["id"] for r in basis.wear])
    return [(probe[0], tuple(cids)) for probe, cids in origins.items()
            if probe not in basis.superseded]


def replay_items(io, journal: Journal, options, rng, k: int,
                 taken_back: Collection[str] = ()) -> tuple[list[tuple], list[int]]:
    """A sample of earlier nights' kept dreams (Journal.replayable_dreams says which
    may be replayed), but those that say a word tonight takes back (updates.py):
    their training items, and their ids."""
    if not options.dream_replay or options.dream_replay_count <= 0:
        return [], []
    pool = [r for r in journal.replayable_dreams()
            if not says_any(f"{r['prompt']} {r['content']}", taken_back)]
    chosen = rng.sample(pool, min(options.dream_replay_count, len(pool)))
    item = held_item if options.dream_soft_targets else sft_item
    return [item(io, r["prompt"], r["content"], k) for r in chosen], [r["id"] for r in chosen]


def dream_item(io, dream: Dream, k: int, options) -> tuple:
    """What rehearsal trains on: the teacher's distributions (or, the ablation, the
    dream's text one-hot)."""
    if options.dream_soft_targets and dream.answer is not None:
        return soft_item(io, dream.request, dream.answer)
    return sft_item(io, dream.request, dream.content, k)


def withdrawn(journal: Journal, dream: Dream) -> bool:
    """Its conversation was made private or forgotten while the night ran."""
    for cid in dream.conversation_ids:
        c = journal.conversation(cid)
        if c.private or c.status == "forgotten":
            return True
    return False


def summary(dreams, kept, replayed, diversifier, options, trials, policy, updated, log,
            seconds, started) -> dict:
    def count(arms):
        out: dict[str, int] = {}
        for a in arms:
            out[a] = out.get(a, 0) + 1
        return out

    scores = [d.score for d in dreams if d.score is not None]
    kept_scores = [dreams[i].score for i in kept if dreams[i].score is not None]
    return {
        "ran": True,
        "candidates": len(dreams),
        "by_arm": count(d.arm for d in dreams),
        "kept": len(kept),
        "kept_by_arm": count(dreams[i].arm for i in kept),
        "replayed": len(replayed),
        "diversifier": diversifier,
        "selection": "gradient" if options.dream_gradient_select else "random",
        "mean_score": round(sum(scores) / len(scores), 4) if scores else None,
        "mean_kept_score": round(sum(kept_scores) / len(kept_scores), 4) if kept_scores else None,
        "rehearsal": log.summary(),
        "trials": trials,
        "policy_before": policy.rounded(),
        "policy_after": updated.rounded(),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "total_seconds": round(time.perf_counter() - started, 1),
    }
