"""The morning merge: base + the active experts become a new, checked, numbered
version of the personal model.

    behind?  →  build the version folder (temporary, fsynced, renamed)
    →  compare it with base + experts  →  switch in one journal transaction,
       or refuse and record why  →  prune to the storage budget

`merge_if_needed` is what `pocketsleep sleep` runs after a successful night, what
chat and `ask` run at start when a merge was missed (`catch_up`), and what the
nightly job calls. Until a merge succeeds the engines wear base + experts, so a
refused or failed merge costs speed, never memory.
"""

from __future__ import annotations

import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable

from ..config import Config, Paths
from ..errors import Busy, PocketsleepError
from ..faults import checkpoint
from ..journal import Journal
from ..models import resolve_model
from .build import build_version, sweep_temporaries
from .layout import (active_expert_ids, files_of, folder_size, last_refusal, merge_needed,
                     usable_version)
from .lock import merge_lock
from .storage import prune, remove_dead_files

Progress = Callable[[str, int, int], None]


@dataclass
class MergeReport:
    status: str  # "merged" | "up to date" | "nothing to merge" | "refused" | "busy"
    version: int | None = None
    experts: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    checks: dict = field(default_factory=dict)
    pruned: dict = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for people."""
        if self.status == "merged":
            c = self.checks
            n = len(self.experts)
            return (f"Merged {n} expert{'s' * (n != 1)} into v{self.version} of your personal "
                    f"model in {self.seconds:.0f} s (fused vs unfused: max logit difference "
                    f"{c['max_logit_diff']:.2g}, same answers {c['same_answers']}/"
                    f"{c['questions']}).")
        if self.status == "up to date":
            return f"Your personal model v{self.version} holds every expert; nothing to merge."
        if self.status == "nothing to merge":
            return "Nothing to merge: no experts yet (the personal model is the base model)."
        if self.status == "refused":
            return (f"Merge refused (v{self.version}): {'; '.join(self.reasons)}. "
                    "The assistant keeps wearing base + experts.")
        return "; ".join(self.reasons)


def merge_if_needed(paths: Paths, config: Config, progress: Progress = lambda *a: None, *,
                    retry_refused: bool = False) -> MergeReport:
    """Merge the active experts into a new current version unless one holds them.

    A set of experts whose merge was refused is not tried again unless
    `retry_refused`: the same inputs give the same refusal.
    """
    started = time.perf_counter()
    with ExitStack() as stack:
        try:
            stack.enter_context(merge_lock(paths))
        except Busy as e:
            return MergeReport("busy", reasons=[str(e)])
        journal = stack.enter_context(Journal.open(paths.journal))
        report = _merge(paths, config, journal, progress, retry_refused)
    report.seconds = round(time.perf_counter() - started, 1)
    return report


def _merge(paths, config, journal: Journal, progress, retry_refused) -> MergeReport:
    clear_unfinished(journal, paths)
    base = resolve_model(config.model, paths)
    rows = journal.active_experts()  # read once: a sleep may add one meanwhile
    ids = tuple(sorted(row["id"] for row in rows))
    if not ids:
        return MergeReport("nothing to merge")
    current = usable_version(journal, paths, base.spec)
    if current is not None:
        return MergeReport("up to date", current.version.id, list(ids))
    refused = last_refusal(journal, base.spec, ids)
    if refused is not None and not retry_refused:
        return MergeReport("refused", refused.id, list(ids), [refused.notes or "refused"],
                           refused.checks)

    experts = [(row["id"], paths.expert_folder(row["path"])) for row in rows]
    version_id = journal.begin_version(base.spec, ids)
    checkpoint("merge.begun")
    files = files_of(journal.version(version_id), paths)
    try:
        build_version(paths, base, experts, files.folder.name, progress)
        from .check import compare

        checks = compare(paths, base, [f for _, f in experts], files.mlx, files.gguf,
                         journal.active_probes(), progress)
        checkpoint("merge.checked")
    except BaseException:
        # Nothing was switched: the current version is as it was. Leave no trace.
        shutil.rmtree(files.folder, ignore_errors=True)
        journal.drop_version(version_id)
        raise
    if not checks.passed:
        journal.refuse_version(version_id, "; ".join(checks.reasons), checks.as_dict())
        remove_dead_files(journal, paths)
        return MergeReport("refused", version_id, list(ids), checks.reasons, checks.as_dict())
    journal.switch_version(version_id, checks.as_dict(), folder_size(files.folder))
    checkpoint("merge.switched")
    pruned = prune(journal, paths, config.keep_versions)
    return MergeReport("merged", version_id, list(ids), checks=checks.as_dict(), pruned=pruned)


def clear_unfinished(journal: Journal, paths: Paths) -> None:
    """Forget versions a killed merge left half-built (callers hold the merge lock,
    so none of them is being built now)."""
    for v in journal.versions():
        if v.status == "ready":
            shutil.rmtree(paths.version_folder(v.path), ignore_errors=True)
            journal.drop_version(v.id)
    sweep_temporaries(paths)
    # Fix: a merge killed between pruning in the journal and deleting the files left
    # them (whole versions: hundreds of MB) until the next merge that switched.
    remove_dead_files(journal, paths)


def catch_up(paths: Paths, config: Config, say: Callable[[str], None],
             progress: Progress = lambda *a: None) -> MergeReport | None:
    """At the start of chat or `ask`: if the last merge was missed (the active experts
    are not in the current version), merge first and say so. A merge that cannot run
    is reported and skipped: base + experts answer the same, only slower."""
    with Journal.open(paths.ensure().journal) as journal:
        spec = resolve_model(config.model, paths).spec
        if not merge_needed(journal, paths, spec):
            return None
        n = len(active_expert_ids(journal))
    say(f"Merging {n} expert{'s' * (n != 1)} into a new version of your personal model first "
        "(the last merge was missed)…")
    try:
        report = merge_if_needed(paths, config, progress)
    except PocketsleepError as e:
        say(f"Could not merge ({e}); answering with base + experts for now.")
        return None
    say(report.summary())
    return report
