"""Experts as GGUF LoRA adapters for llama.cpp, and as updates to fuse into a base.

An expert is an mlx-lm adapter folder (mlx_lora.py): for each adapted projection,
`lora_a` (in × r) and `lora_b` (r × out), applied as W x + scale·(x A) B. llama.cpp
reads LoRA adapters in PEFT's layout (DESIGN.md §4), so an adapter is written with
both matrices transposed — GGUF `lora_a` is r × in, `lora_b` is out × r — under the
base tensor's name (`blk.3.attn_q.weight.lora_a`), with `adapter.lora.alpha` =
scale × rank (llama.cpp multiplies by alpha / rank). For llama models the rows of
q/k updates are permuted as llama.cpp permutes the q/k weights themselves.

- `write_lora_gguf(expert_dir, out, base)`: one expert as a GGUF adapter file
  (`llama-cli -m BASE.gguf --lora out`, `Llama(model_path=BASE, lora_path=out)`);
- `write_expert_gguf(expert_dir, base)`: the same, as `adapter.gguf` inside the
  expert folder, where the llama.cpp engine's `attach_expert` looks for it;
- `read_expert(expert_dir, source)`: the expert checked against a base model, whose
  `delta(name)` is the update the fused export adds to that weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pocketsleep.errors import InputError

from .gguf_source import ModelSource, gguf_base_name, open_source
from .gguf_write import PlannedTensor, write_gguf


@dataclass
class Expert:
    path: Path
    rank: int
    scale: float
    source: ModelSource
    # GGUF weight name ("blk.3.attn_q.weight") -> (A: in × r, B: r × out), float32
    pairs: dict[str, tuple[np.ndarray, np.ndarray]]

    def delta(self, name: str) -> np.ndarray:
        """scale · (A B)ᵀ for weight `name` (out × in), in GGUF layout, float32."""
        a, b = self.pairs[name]
        return self.source.to_gguf_layout(name, np.float32(self.scale) * (a @ b).T)


def read_expert(expert_dir: Path, source: ModelSource) -> Expert:
    """Load the expert in `expert_dir` and check that it fits `source`."""
    import mlx.core as mx

    from .mlx_lora import read_expert as read_folder

    expert_dir = Path(expert_dir)
    config, weights = read_folder(expert_dir)
    kind = config.get("fine_tune_type", "lora")
    if kind != "lora":
        raise InputError(f"expert {expert_dir}: fine_tune_type '{kind}' cannot be exported "
                         "(only LoRA experts can)")
    params = config.get("lora_parameters") or {}
    scale = float(params.get("scale", 1.0))  # the default mlx_lora.attach uses
    halves: dict[str, dict[str, np.ndarray]] = {}
    for key, value in weights.items():
        module, _, leaf = key.rpartition(".")
        base = gguf_base_name(module)
        if leaf not in ("lora_a", "lora_b") or base is None:
            raise InputError(f"expert {expert_dir}: tensor '{key}' does not fit a "
                             f"{source.arch} model; it cannot be exported")
        halves.setdefault(f"{base}.weight", {})[leaf] = np.array(value.astype(mx.float32))
    pairs, ranks = {}, set()
    for name, pair in sorted(halves.items()):
        shape = source.shapes.get(name)
        a, b = pair.get("lora_a"), pair.get("lora_b")
        if (shape is None or a is None or b is None or a.ndim != 2 or b.ndim != 2
                or a.shape[1] != b.shape[0] or (b.shape[1], a.shape[0]) != tuple(shape)):
            raise InputError(f"expert {expert_dir} does not fit the model {source.path} "
                             f"(layer {name}); it was trained on another base model")
        pairs[name] = (a, b)
        ranks.add(a.shape[1])
    if not pairs:
        raise InputError(f"expert {expert_dir} holds no LoRA weights; remove it or re-run sleep")
    if len(ranks) != 1:
        raise InputError(f"expert {expert_dir}: layers have different ranks {sorted(ranks)}; "
                         "a GGUF adapter needs one rank")
    return Expert(expert_dir, ranks.pop(), scale, source, pairs)


def write_lora_gguf(expert_dir: Path, out: Path, base: Path | ModelSource, *,
                    overwrite: bool = False) -> int:
    """Write the expert in `expert_dir` as a GGUF LoRA adapter for `base` (a .gguf file,
    an MLX folder or an opened source); returns the file size."""
    source = base if isinstance(base, ModelSource) else open_source(base)
    expert = read_expert(expert_dir, source)
    scale = expert.scale
    # llama.cpp reads alpha 0 as "no alpha" (scale 1): fold a zero scale into B instead.
    b_factor, alpha = (np.float32(0.0), float(expert.rank)) if scale == 0 else (
        np.float32(1.0), scale * expert.rank)
    plan: list[PlannedTensor] = []
    for name, (a, b) in expert.pairs.items():
        plan.append(PlannedTensor(f"{name}.lora_a", (a.shape[1], a.shape[0]), "F32"))
        plan.append(PlannedTensor(f"{name}.lora_b", (b.shape[1], b.shape[0]), "F32"))

    def produce():
        for name, (a, b) in expert.pairs.items():
            yield a.T
            yield source.to_gguf_layout(name, b.T * b_factor)

    metadata = {
        "general.type": "adapter",
        "general.name": Path(expert_dir).name,
        "adapter.type": "lora",
        "adapter.lora.alpha": alpha,
    }
    return write_gguf(Path(out), source.arch, metadata, plan, produce, overwrite=overwrite)


def write_expert_gguf(expert_dir: Path, base: Path | ModelSource) -> Path:
    """Write (or replace) `adapter.gguf` inside the expert folder, for the llama.cpp
    engine's attach_expert; `base` is the GGUF it will be attached to."""
    from .llamacpp_engine import GGUF_ADAPTER

    out = Path(expert_dir) / GGUF_ADAPTER
    write_lora_gguf(expert_dir, out, base, overwrite=True)
    return out
