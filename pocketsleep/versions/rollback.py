"""Rollback: make an earlier version of the personal model current again.

A version is a set of experts fused into the base, so rolling back to it means:
- its files become what the engines load (unchanged since it was built, hence the
  very same answers);
- its experts become exactly the active ones. Experts it does not hold (later
  nights, or a consolidation made after it) are switched off (status 'rejected');
  experts it holds that were retired since are switched on again;
- a conversation stays consolidated only while an active expert learned it; the
  conversations only the switched-off experts learned are pending again, so the
  next sleep learns them afresh on top of the restored version (mark one private,
  or forget it, to keep it out);
- the version that was current stays as an earlier version, so a rollback can be
  undone with another rollback while it is kept (see storage.py).

Rollback takes the merge lock and refuses while a sleep runs: tonight's expert
is being trained on top of the experts that are active now.
"""

from __future__ import annotations

import re
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from ..config import Config, Paths
from ..errors import Busy, InputError
from ..journal import Journal
from ..journal.records import ModelVersion
from ..models import resolve_model
from .layout import files_of
from .lock import merge_lock
from .storage import prune

_NUMBER = re.compile(r"^[vV]?(\d+)$")


@dataclass
class RollbackReport:
    version: int
    replaced: int | None  # the version that was current before
    switched_off: list[int] = field(default_factory=list)  # expert ids
    switched_on: list[int] = field(default_factory=list)
    pending_again: list[int] = field(default_factory=list)  # conversation ids
    pruned: dict = field(default_factory=dict)


def parse_version(text: str) -> int:
    m = _NUMBER.match(text.strip())
    if not m:
        raise InputError(f"'{text}' is not a version number; give one like 3 or v3 "
                         "(`pocketsleep models` lists them)")
    return int(m.group(1))


def rollback(paths: Paths, config: Config, number: int) -> RollbackReport:
    with ExitStack() as stack:
        stack.enter_context(merge_lock(paths))
        stack.enter_context(_no_sleep_running(paths))
        journal = stack.enter_context(Journal.open(paths.journal))
        if not any(v.status in ("current", "previous") for v in journal.versions()):
            raise InputError("nothing to roll back: there is no version of your personal model "
                             "yet (one is made after each sleep)")
        target = journal.version(number)
        _check_restorable(target, journal, paths)
        base = resolve_model(config.model, paths).spec
        if target.base_model != base:
            raise InputError(f"{target.label} was built on the model '{target.base_model}', "
                             f"not on '{base}'; set model = \"{target.base_model}\" in "
                             "config.toml first")
        current = journal.current_version()
        changes = journal.rollback_to(target.id)
        pruned = prune(journal, paths, config.keep_versions)
    return RollbackReport(target.id, current.id if current else None, pruned=pruned, **changes)


def _check_restorable(v: ModelVersion, journal: Journal, paths: Paths) -> None:
    why = {
        "current": f"{v.label} is already the current version",
        "refused": f"{v.label} was refused by the merge check ({v.notes}); it has no files",
        "pruned": f"{v.label} was deleted: it {v.notes.partition(': ')[0]}"
                  if (v.notes or "").startswith("held forgotten") else
                  f"{v.label} was pruned to save space; only the current version and "
                  "keep_versions earlier ones (config.toml) are kept",
        "ready": f"{v.label} is still being built; wait for the merge to finish",
    }.get(v.status)
    if why:
        raise InputError(why)
    if not files_of(v, paths).complete():
        raise InputError(f"the files of {v.label} are missing from "
                         f"{paths.version_folder(v.path)}; it cannot be restored")
    for row in journal.experts_learned(v.expert_ids):
        if row["status"] == "pruned":
            raise InputError(f"{v.label} needs expert {row['id']}, whose files were pruned; "
                             "it cannot be restored")


@contextmanager
def _no_sleep_running(paths: Paths):
    from ..sleep.job import sleep_lock

    lock = sleep_lock(paths)
    try:
        lock.__enter__()
    except Busy:
        raise Busy("a sleep is running; roll back after it has finished") from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)
