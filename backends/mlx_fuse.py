"""Fuse LoRA experts into an MLX model folder: the morning merge's MLX half.

An expert adds scale·(x A) B to a projection's output (mlx_lora.ExpertStack), which
is the same as replacing its weight W (out × in) by W + scale·(A B)ᵀ. `fuse_folder`
writes a copy of a base model folder with every expert folded in that way, in
float32 (full precision: the fused model must agree with base + experts before it
is trusted), shard by shard so only one shard is in memory at a time. Every other
file of the folder (config, tokenizer, chat template) is copied as it is, so the
result loads with mlx_lm.load like the base does.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pocketsleep.backends  # noqa: F401  (fast BLAS before mlx loads)
import mlx.core as mx

from pocketsleep.errors import InputError

from .mlx_lora import read_expert


@dataclass(frozen=True)
class Update:
    """One expert's low-rank update of one projection: W += scale·(A B)ᵀ."""

    expert: Path
    lora_a: mx.array  # in × r
    lora_b: mx.array  # r × out
    scale: float

    def delta(self) -> mx.array:
        a, b = self.lora_a.astype(mx.float32), self.lora_b.astype(mx.float32)
        return self.scale * (a @ b).T


def read_updates(experts: Sequence[Path]) -> dict[str, list[Update]]:
    """Weight name ("model.layers.3.self_attn.q_proj.weight") -> the experts'
    updates of it, in the order the experts are given."""
    updates: dict[str, list[Update]] = {}
    for path in experts:
        config, weights = read_expert(Path(path))
        scale = float(config.get("lora_parameters", {}).get("scale", 1.0))
        pairs: dict[str, dict[str, mx.array]] = {}
        for key, value in weights.items():
            module, _, leaf = key.rpartition(".")
            if leaf not in ("lora_a", "lora_b"):
                raise InputError(f"expert {path}: unexpected tensor {key}")
            pairs.setdefault(module, {})[leaf] = value
        for module, pair in pairs.items():
            if set(pair) != {"lora_a", "lora_b"}:
                raise InputError(f"expert {path} is damaged (layer {module} lacks A or B)")
            updates.setdefault(f"{module}.weight", []).append(
                Update(Path(path), pair["lora_a"], pair["lora_b"], scale))
    return updates


def check_fusable(base: Path) -> dict:
    """The base folder's config, if its weights can take an update (not quantised)."""
    try:
        config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {base / 'config.json'} ({e})") from None
    if "quantization" in config or "quantization_config" in config:
        raise InputError(f"the base model {base} is quantised; the merge needs full-precision "
                         "weights (use its GGUF, or an unquantised folder of it)")
    return config


def fuse_folder(base: Path, experts: Sequence[Path], out: Path) -> int:
    """Write `base` with `experts` fused in, float32, into the new folder `out`.

    The caller makes it atomic (a temporary `out`, fsynced, renamed). Raises
    InputError, before writing any weights, when an expert does not fit the base.
    Returns the number of weight matrices changed.
    """
    base, out = Path(base), Path(out)
    check_fusable(base)
    updates = read_updates(experts)
    shards = sorted(base.glob("*.safetensors"))
    _check_fit(shards, updates)
    out.mkdir(mode=0o700, parents=True)
    changed = 0
    for f in sorted(base.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue  # hub bookkeeping, caches
        if f.suffix != ".safetensors":
            shutil.copyfile(f, out / f.name)
            continue
        weights, metadata = mx.load(str(f), return_metadata=True)
        fused = {}
        for key, w in weights.items():
            if mx.issubdtype(w.dtype, mx.floating):
                w = w.astype(mx.float32)
            for update in updates.get(key, ()):
                w = w + update.delta()
                changed += 1
            fused[key] = w
        mx.eval(fused)
        mx.save_safetensors(str(out / f.name), fused, metadata=metadata or {"format": "mlx"})
        del weights, fused
    return changed


def float32_bytes(base: Path) -> int:
    """The size of `base`'s weights once fused (floating tensors as float32)."""
    total = 0
    for f in base.glob("*.safetensors"):
        for w in mx.load(str(f)).values():  # lazy: shapes only
            total += w.size * (4 if mx.issubdtype(w.dtype, mx.floating) else w.itemsize)
    return total


def _check_fit(shards: list[Path], updates: dict[str, list[Update]]) -> None:
    """Every update must meet a weight of its shape (out × in) in some shard."""
    shapes: dict[str, tuple[int, ...]] = {}
    for f in shards:
        # Lazy: mx.load maps the file; shapes are known without reading the data.
        shapes.update({k: tuple(v.shape) for k, v in mx.load(str(f)).items()})
    for name, items in updates.items():
        for u in items:
            want = (u.lora_b.shape[-1], u.lora_a.shape[0])
            if shapes.get(name) != want or u.lora_a.shape[1] != u.lora_b.shape[0]:
                raise InputError(f"expert {u.expert} does not fit the base model "
                                 f"(layer {name.removesuffix('.weight')}); it was trained "
                                 "on another base")
