"""Choosing and opening an engine for the user's model.

`auto` picks MLX where it has a GPU (Metal on Apple silicon, CUDA on Linux) and
llama.cpp on CPU-only machines, where llama.cpp answers several times faster.
"""

from __future__ import annotations

import platform

from .backends.base import Engine
from .config import ENGINES, Config, Paths
from .errors import InputError
from .journal import Journal
from .models import ResolvedModel, resolve_model
from .versions.layout import usable_version


def mlx_has_gpu() -> bool:
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return True
    try:
        import pocketsleep.backends  # noqa: F401  (fast BLAS before mlx loads)
        import mlx.core as mx
    except ImportError:
        return False
    cuda = getattr(mx, "cuda", None)
    return bool(cuda is not None and cuda.is_available())


def choose_engine(requested: str) -> str:
    if requested not in ENGINES:
        raise InputError(f"unknown engine '{requested}'; use one of: {', '.join(ENGINES)}")
    if requested != "auto":
        return requested
    return "mlx" if mlx_has_gpu() else "llamacpp"


def open_engine(
    paths: Paths, config: Config, model: str | None = None, engine: str | None = None
) -> Engine:
    """Resolve the model and load it in the chosen engine; record it in the journal.

    Safe to call from any thread: the record uses its own short-lived connection.
    """
    resolved = resolve_model(model or config.model, paths)
    name = choose_engine(engine or config.engine)
    # The personal model: the base plus every expert consolidated so far (only when
    # the base is the one they were trained on). Once merged, its current version
    # holds them in its weights: loaded as it is, nothing attached.
    personal = model is None or model == config.model
    with Journal.open(paths.ensure().journal) as journal:
        version = usable_version(journal, paths, resolved.spec) if personal else None
    if version is not None:
        loaded = load_engine(version.as_model(name, resolved.name), name, paths)
        loaded.personal_version = version.version.id
    else:
        loaded = load_engine(resolved, name, paths)
    with Journal.open(paths.ensure().journal) as journal:
        journal.record_model(**resolved.as_record())
        if personal and version is None:
            wear_experts(loaded, journal, paths)
    return loaded


def wear_experts(engine: Engine, journal: Journal, paths: Paths) -> int:
    experts = journal.active_experts()
    for row in experts:
        engine.attach_expert(paths.expert_folder(row["path"]))
    return len(experts)


def load_engine(resolved: ResolvedModel, name: str, paths: Paths) -> Engine:
    if name == "llamacpp":
        from .backends.llamacpp_engine import LlamaCppEngine

        return LlamaCppEngine.load(resolved)
    from .errors import require

    require("mlx_lm", "mlx", "the MLX engine")
    from .backends.mlx_engine import MlxEngine

    return MlxEngine.load(resolved, paths)
