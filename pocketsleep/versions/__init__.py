"""Versions of the personal model: the morning merge, rollback and the storage budget.

    layout.py    what a version is on disk; when the engines may wear one
    build.py     writing a version folder atomically (MLX float32 + GGUF f16)
    check.py     fused vs unfused, before switching
    merge.py     merge_if_needed / catch_up: build, check, switch, prune
    rollback.py  make an earlier version current again
    storage.py   what is kept, what is pruned, disk use
"""

from .merge import MergeReport, catch_up, merge_if_needed
from .rollback import RollbackReport, parse_version, rollback

__all__ = ["MergeReport", "RollbackReport", "catch_up", "merge_if_needed", "parse_version",
           "rollback"]
