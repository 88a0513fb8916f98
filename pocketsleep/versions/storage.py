"""The storage budget: which versions and expert files are kept, and disk use.

Policy: the current version plus the `keep_versions` most recent (by number)
earlier versions stay, for rollback; older ones are pruned. An expert's files stay
while it is active or some kept version holds it (a rollback needs them, and so do
later merges); the files of experts no longer worn (retired into a slower expert,
or switched off by a rollback) that no kept version holds are deleted. Journal rows
are never deleted: they become 'pruned', so `pocketsleep models` still tells what
each version learned. The journal is updated first and files deleted after, so a
crash in between leaves only files that the next prune deletes.
"""

from __future__ import annotations

import shutil

from ..config import Paths
from ..errors import ConfigError
from ..faults import checkpoint
from ..journal import Journal
from ..journal.records import now
from .layout import folder_size


def prune(journal: Journal, paths: Paths, keep: int) -> dict[str, list[int]]:
    """Apply the policy; returns the version numbers and expert ids pruned now."""
    if keep < 0:
        raise ConfigError(f"{paths.config_file}: keep_versions must be 0 or more, got {keep}")
    earlier = [v for v in journal.versions() if v.status == "previous"]  # newest first
    versions = []
    for v in earlier[keep:]:
        journal.prune_version(v.id, f"pruned {now()}: {keep} earlier versions are kept")
        versions.append(v.id)
    experts = []
    for row in journal.unneeded_experts():
        journal.prune_expert(row["id"])
        experts.append(row["id"])
    checkpoint("prune.journal_updated")
    remove_dead_files(journal, paths)
    return {"versions": versions, "experts": experts}


def remove_dead_files(journal: Journal, paths: Paths) -> None:
    """Delete what the journal says is gone: pruned or refused versions' folders,
    pruned experts' folders."""
    for v in journal.versions():
        if v.status in ("pruned", "refused") and v.path:
            shutil.rmtree(paths.version_folder(v.path), ignore_errors=True)
    for row in journal.experts("pruned"):
        shutil.rmtree(paths.expert_folder(row["path"]), ignore_errors=True)


def disk_use(paths: Paths) -> dict[str, int]:
    """Bytes used in the data home, by kind."""
    journal = sum(folder_size(paths.journal.with_name(paths.journal.name + suffix))
                  for suffix in ("", "-wal", "-shm"))
    versions = folder_size(paths.versions)
    use = {
        "journal": journal,
        "experts": folder_size(paths.experts),
        "versions": versions,
        # GGUF conversions to MLX and downloaded hub models.
        "model_cache": folder_size(paths.models) - versions,
        "logs": folder_size(paths.logs),
        "exports": folder_size(paths.exports),
    }
    use["other"] = max(0, folder_size(paths.home) - sum(use.values()))
    use["total"] = sum(use.values())
    return use
