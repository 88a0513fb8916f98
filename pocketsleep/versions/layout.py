"""What a version of the personal model is on disk, and when the engines may use one.

A version folder (`Paths.versions / v0003`) holds the same model twice, once per
engine: `mlx/` (an mlx-lm folder: float32 safetensors, config, tokenizer) and
`model.gguf` (f16, for llama.cpp), plus `version.json`, a human-readable note of
what went into it (the journal is the authority).

The engines wear a version instead of base + experts only when it is current, was
built on the same base model, holds exactly the active experts and its files are
all there. Anything else (a sleep since the last merge, a missed merge, another
base model) falls back to base + experts, which is always correct, only slower.
No heavy imports here: the chat and `ask` read this at every start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Paths
from ..journal import Journal
from ..journal.records import ModelVersion
from ..models import ResolvedModel

MLX_DIR = "mlx"
GGUF_FILE = "model.gguf"
MANIFEST = "version.json"
# The GGUF's matrix type. The fused weights are float32 (the MLX copy); llama.cpp
# gets them in f16: half the disk of float32, and on the embedded model it kept
# base + experts' greedy answers where q8_0 changed one (the check bounds it).
GGUF_QUANT = "f16"


@dataclass(frozen=True)
class VersionFiles:
    version: ModelVersion
    folder: Path

    @property
    def mlx(self) -> Path:
        return self.folder / MLX_DIR

    @property
    def gguf(self) -> Path:
        return self.folder / GGUF_FILE

    def complete(self) -> bool:
        return (self.mlx / "config.json").is_file() and self.gguf.is_file()

    def as_model(self, engine: str, base_name: str) -> ResolvedModel:
        """The version as a model the chosen engine loads directly."""
        spec = f"personal model {self.version.label}"
        if engine == "llamacpp":
            return ResolvedModel(spec, "gguf", self.gguf, base_name)
        return ResolvedModel(spec, "mlx", self.mlx, base_name)


def files_of(version: ModelVersion, paths: Paths) -> VersionFiles:
    return VersionFiles(version, paths.version_folder(version.path))


def active_expert_ids(journal: Journal) -> tuple[int, ...]:
    return tuple(sorted(r["id"] for r in journal.active_experts()))


def personal_model_state(journal: Journal) -> tuple[int | None, tuple[int, ...]]:
    """What the personal model is made of now: the current version and the active
    experts. A model loaded before this changed (a merge, a sleep, a rollback, a
    forget) is out of date: the chat loads it again between two answers."""
    current = journal.current_version()
    return (current.id if current else None), active_expert_ids(journal)


def usable_version(journal: Journal, paths: Paths, base_spec: str) -> VersionFiles | None:
    """The current version, if the engines may wear it for `base_spec` right now."""
    current = journal.current_version()
    if current is None or current.base_model != base_spec:
        return None
    if tuple(sorted(current.expert_ids)) != active_expert_ids(journal):
        return None
    files = files_of(current, paths)
    return files if files.complete() else None


def merge_needed(journal: Journal, paths: Paths, base_spec: str) -> bool:
    """Is the personal model behind (active experts not yet merged)? A set whose
    merge was refused is not retried by itself: the same inputs are refused again."""
    active = active_expert_ids(journal)
    if not active or usable_version(journal, paths, base_spec) is not None:
        return False
    return last_refusal(journal, base_spec, active) is None


def last_refusal(journal: Journal, base_spec: str,
                 expert_ids: tuple[int, ...]) -> ModelVersion | None:
    """The newest version of this base and expert set, if its merge was refused."""
    for v in journal.versions():  # newest first
        if v.base_model == base_spec and tuple(sorted(v.expert_ids)) == expert_ids:
            return v if v.status == "refused" else None
    return None


def folder_size(path: Path) -> int:
    """Bytes in the files under `path` (0 if it does not exist)."""
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
