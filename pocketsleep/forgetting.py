"""`pocketsleep forget ID` reaching the weights.

Deleting a conversation's text is not enough once a night has learned it: the
fact is in an expert's weights, in every version of the personal model fused from
it, and in the slower experts it was consolidated into. So:

    remove the text (journal.forget: its messages, and the probes and dreams
    derived from it)
    →  every expert trained on anything of it (Journal.experts_trained_on): those
       that learned it (expert_sources), and later nights' experts that held its
       probes in place as earlier anchors or replayed its dreams (expert_rehearsed):
         an active one is rebuilt from its other conversations: the night's
         pipeline (job.learn_episode) on an episode of just those, wearing every
         other active expert except any trained on the forgotten one, and
         recorded as its replacement. With nothing else to learn, or when the
         rebuild's gate says no, it is dropped and its other conversations are
         pending again (the next night learns them afresh);
         an inactive one (retired into a slower expert, switched off by a
         rollback) is dropped: its files would bring the fact back;
       every version holding any of them is pruned, and their files deleted
    →  the morning merge: a version without them
    →  check: the probes about the forgotten conversation, asked closed-book
       before and after, must no longer be answered

The weights part holds the sleep lock (a sleep must not learn on top of what is
being removed). If it cannot run or stops half-way, the text is gone already and
`forget ID` again finishes the job: the experts trained on it are still known.

Not counted as trained on it: a later night's expert distilled from a teacher that
wore the expert that learned it (tonight's teacher wears every earlier expert, and
may say an earlier fact while answering about tonight), or anchored on generic
prompts answered by that model. Only the probes and dreams of the conversation,
which state its facts, are recorded.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable

from .config import Config, Paths
from .errors import Busy, PocketsleepError
from .journal import Journal
from .sleep.options import SleepOptions
from .text import counted

Progress = Callable[[str, int, int], None]
# How long to wait for a merge or rollback running beside forget before deleting files.
MERGE_WAIT_SECONDS = 120


@dataclass
class ForgetReport:
    conversation_id: int
    messages_removed: int = 0
    probes_removed: int = 0
    rebuilt: list[tuple[str, str]] = field(default_factory=list)  # (old folder, new folder)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (folder, why)
    pending_again: list[int] = field(default_factory=list)  # conversation ids
    versions_pruned: list[int] = field(default_factory=list)
    merge: object | None = None  # versions.MergeReport
    check: dict | None = None

    @property
    def touched_weights(self) -> bool:
        return bool(self.rebuilt or self.dropped)

    def summary(self) -> str:
        """What happened, in a line or three, for people."""
        n = self.probes_removed
        parts = [f"text removed ({counted(self.messages_removed, 'message')} deleted"
                 + (f", {n} stored probe{'s' * (n != 1)}" if n else "") + ")"]
        parts += [f"expert {old} rebuilt without it ({new})" for old, new in self.rebuilt]
        parts += [f"expert {folder} deleted ({why})" for folder, why in self.dropped]
        if not self.touched_weights:
            parts.append("no expert had learned it")
        if self.versions_pruned:
            parts.append("version" + "s" * (len(self.versions_pruned) > 1) + " "
                         + ", ".join(f"v{v}" for v in self.versions_pruned) + " deleted")
        if self.merge is not None:
            m = self.merge
            parts.append({"merged": f"personal model v{m.version}",
                          "nothing to merge": "personal model = the base model again",
                          }.get(m.status, f"merge: {m.summary()}"))
        lines = [f"Forgot conversation {self.conversation_id}: " + "; ".join(parts) + "."]
        if self.pending_again:
            lines.append("Conversations " + ", ".join(map(str, self.pending_again))
                         + " will be learned again at the next sleep.")
        if self.check and self.check["probes"]:
            c = self.check
            lines.append(f"Checked {c['probes']} stored question{'s' * (c['probes'] != 1)} "
                         f"about it: answered before {c['recalled_before']}, now "
                         f"{c['recalled_after']}; likelihood of the old answers "
                         f"{c['soft_before']:.2g} -> {c['soft_after']:.2g} per token.")
        return "\n".join(lines)


def forget_conversation(paths: Paths, config: Config, conversation_id: int,
                        progress: Progress = lambda *a: None,
                        options: SleepOptions = SleepOptions()) -> ForgetReport:
    report = ForgetReport(conversation_id)
    with Journal.open(paths.journal) as journal:
        about = checkable_probes(journal, conversation_id)
        report.probes_removed = len(journal.probes_about(conversation_id))
        report.messages_removed = journal.forget(conversation_id)
        learned = learned_from(journal, conversation_id)
    if not learned:
        return report
    try:
        _reach_weights(paths, config, conversation_id, learned, about, report, progress,
                       options)
    except PocketsleepError as e:
        raise type(e)(f"conversation {conversation_id}'s text is removed, but not yet what "
                      f"was learned from it: {e}. Run `pocketsleep forget "
                      f"{conversation_id}` again to finish") from None
    return report


def learned_from(journal: Journal, conversation_id: int) -> list[dict]:
    """The experts whose files still hold what was learned from the conversation, or
    rehearsed of it (any status but pruned: a retired expert's files would bring it
    back)."""
    return [e for e in journal.experts_trained_on(conversation_id) if e["status"] != "pruned"]


def rebuild_note(learned: list[dict]) -> str | None:
    """What forgetting will rebuild, for the confirmation (None: nothing to rebuild,
    only files to delete)."""
    rebuilt = [e["path"] for e in learned if e["status"] == "active"]
    if not rebuilt:
        return None
    many = len(rebuilt) > 1
    return (f"Expert{'s' * many} {', '.join(rebuilt)} {'were' if many else 'was'} trained on "
            f"it and will be rebuilt without it (minutes{' each' * many}).")


def checkable_probes(journal: Journal, conversation_id: int) -> list[tuple[str, str]]:
    """The stored probes about a conversation whose answer it alone holds: after it
    is forgotten they must no longer be answered. A probe whose answer words all
    occur in other conversations learned by the experts that learned this one may
    rightly still be answered, and is not checked."""
    from .sleep.words import content_words

    if journal.conversation(conversation_id).status == "forgotten":
        return []  # its text is gone already: nothing left to tell probes apart by
    others = set()
    learned = [e["id"] for e in journal.experts_trained_on(conversation_id, rehearsed=False)]
    for cid in journal.expert_sources(learned) if learned else []:
        if cid != conversation_id and journal.conversation(cid).status != "forgotten":
            others |= content_words(" ".join(m["content"] for m in journal.turns(cid)))
    out = []
    for p in journal.probes_about(conversation_id):
        words = content_words(p["answer"])
        if p["answer"].strip() and not (words and words <= others):
            out.append((p["question"], p["answer"]))
    return out


def _reach_weights(paths, config, conversation_id, learned, about, report, progress,
                   options) -> None:
    from .sleep.job import sleep_lock
    from .versions import merge_if_needed

    why = f"held forgotten conversation {conversation_id}"
    with ExitStack() as stack:
        try:
            stack.enter_context(sleep_lock(paths))
        except Busy:
            raise Busy("a sleep is running") from None
        with Journal.open(paths.journal) as journal:
            before = recall(paths, config, journal.active_experts(), about, progress)
            pruned_before = {v.id for v in journal.versions() if v.status == "pruned"}
            ids = {e["id"] for e in learned}
            for e in learned:
                if e["status"] == "active":
                    _rebuild(paths, config, journal, e, ids, conversation_id, report,
                             progress, options)
                else:
                    journal.drop_expert(e["id"], why)
                    report.dropped.append((e["path"], f"retired; it {why}"))
            report.versions_pruned = sorted(v.id for v in journal.versions()
                                            if v.status == "pruned" and v.id not in pruned_before)
            _delete_files(paths, journal)
            after = recall(paths, config, journal.active_experts(), about, progress)
    report.check = {"probes": len(about), **{f"{k}_before": v for k, v in before.items()},
                    **{f"{k}_after": v for k, v in after.items()}}
    report.merge = merge_if_needed(paths, config, progress)


def _rebuild(paths, config, journal, expert, forgetting_ids, forgotten, report, progress,
             options) -> None:
    """Learn the expert's other conversations again into its replacement."""
    from .sleep.episode import Episode
    from .sleep.job import Basis, learn_episode

    why = f"held forgotten conversation {forgotten}"
    # Kept with the rebuild's sleep row, for `sleep --report` and `status`.
    about = {"rebuilds": expert["path"], "forgotten": forgotten}
    episode = Episode.of(journal, journal.expert_sources([expert["id"]]))
    if episode.empty:
        report.pending_again += journal.drop_expert(expert["id"], why)
        report.dropped.append((expert["path"], "nothing else was learned in it"))
        return
    wear = [r for r in journal.active_experts() if r["id"] not in forgetting_ids]
    ids = [r["id"] for r in wear]
    earlier = [(p["question"], p["answer"]) for p in journal.expert_probes(ids)] if wear else []

    def record(journal_, sleep_id, name, config_json, probes, metrics, rehearsed):
        return journal_.replace_expert(expert["id"], sleep_id, name, config_json,
                                       episode.conversation_ids, probes,
                                       {**metrics, **about}, why, rehearsed)

    basis = Basis(wear, earlier, expert["level"], record, origins=journal.probe_origins(ids))
    sleep_id = journal.begin_sleep("rebuild")
    name = expert["path"]
    try:
        night = learn_episode(paths, config, options, journal, episode, sleep_id,
                              time.perf_counter(), _prefixed(progress, f"rebuilding {name}: "),
                              basis)
    except BaseException as e:
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        journal.end_sleep(sleep_id, status, about, error=f"{type(e).__name__}: {e}"[:500])
        raise
    if night.status == "succeeded":
        new = next(r["path"] for r in journal.active_experts() if r["id"] == night.expert_id)
        report.rebuilt.append((name, new))
    else:
        # Recorded as rejected already; now with what it was rebuilding.
        journal.end_sleep(sleep_id, night.status, {**night.metrics, **about},
                          error="; ".join(night.reasons))
        report.pending_again += journal.drop_expert(expert["id"], why)
        report.dropped.append((name, "its rebuild was rejected: " + "; ".join(night.reasons)))


def _delete_files(paths: Paths, journal: Journal) -> None:
    """Delete the pruned experts' and versions' files, once no merge or rollback is
    using them."""
    from .versions.lock import merge_lock
    from .versions.storage import remove_dead_files

    deadline = time.monotonic() + MERGE_WAIT_SECONDS
    while True:
        try:
            with merge_lock(paths):
                remove_dead_files(journal, paths)
            return
        except Busy:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def recall(paths: Paths, config: Config, experts: list[dict], probes: list[tuple[str, str]],
           progress: Progress) -> dict:
    """How well base + `experts` answers `probes` closed-book: greedy answers that
    contain the stored answer, and the soft recall (mean per-token probability of
    the stored answer)."""
    if not probes:
        return {"recalled": 0, "soft": 0.0}
    import numpy as np

    from . import prompts
    from .backends.mlx_engine import MlxEngine
    from .eval.scoring import mentions
    from .models import resolve_model
    from .versions.check import answer

    progress("checking what is still answered", 0, 1)
    engine = MlxEngine.load(resolve_model(config.model, paths), paths)
    try:
        for row in experts:
            engine.attach_expert(paths.expert_folder(row["path"]))
        said = [answer(engine, q).text for q, _ in probes]
        soft = [float(np.exp(np.mean(engine.score(prompts.closed_book(q), a))))
                for q, a in probes]
    finally:
        engine.close()
    return {"recalled": sum(mentions(s, [a]) for s, (_, a) in zip(said, probes)),
            "soft": float(np.mean(soft))}


def _prefixed(progress: Progress, prefix: str) -> Progress:
    return lambda phase, step, total: progress(prefix + phase, step, total)
