"""Dreaming: what is switched on while dreams are written, to diversify them.

The paper injects a randomly chosen expert while the model dreams. Here it is either
- one of the experts the personal model wears tonight, chosen at random and worn at
  a boosted scale: an earlier night's memory, exaggerated, colours tonight's dreams
  (and conditions them on what recent experts know). A worn expert, not a retired
  one: its knowledge is the model's as it is now, its weights are already loaded,
  and a retired expert's knowledge lives on in the slower expert that replaced it,
  which would make it count twice; or
- random low-rank noise: a temporary LoRA with small random A and B on the layers
  of tonight's expert, when there is no earlier expert (the first night) or by coin.

Both are extra entries in mlx_lora.ExpertStack lists, removed on the way out: the
model is exactly as it was afterwards.
"""

from __future__ import annotations

import random
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pocketsleep.backends  # noqa: F401  (fast BLAS before mlx loads)
import mlx.core as mx
import numpy as np

from ...backends import mlx_lora
from ...backends.mlx_lora import ExpertStack


def _stacks(model) -> list[ExpertStack]:
    return [m for _, m in model.named_modules() if isinstance(m, ExpertStack)]


@contextmanager
def _removed_after(model):
    """Whatever is appended to any ExpertStack inside the block is removed after it."""
    before = {id(s): len(s.experts) for s in _stacks(model)}
    try:
        yield
    finally:
        for s in _stacks(model):
            del s.experts[before.get(id(s), 0):]


def _weight_rms(linear) -> float | None:
    weight = getattr(linear, "weight", None)
    if weight is None or not mx.issubdtype(weight.dtype, mx.floating) or "scales" in linear:
        return None  # a quantised layer: its packed weight says nothing about scale
    return float(mx.sqrt(mx.mean(weight.astype(mx.float32) ** 2)).item())


@contextmanager
def noise_expert(model, rank: int, size: float, seed: int):
    """Random low-rank noise on every layer that holds tonight's expert, scaled so
    that its output is about `size` times the layer's own (for inputs of any norm:
    x·A·B has the per-entry variance |x|²·s²/in, W·x about |x|²·rms(W)²)."""
    rng = np.random.default_rng(seed)
    with _removed_after(model):
        for stack in _stacks(model):
            if not stack.has_new:
                continue
            in_dims, out_dims = stack.new_a.shape[0], stack.new_b.shape[1]
            rms = _weight_rms(stack.linear) or 1 / in_dims ** 0.5
            a = rng.standard_normal((in_dims, rank)) / in_dims ** 0.5
            b = rng.standard_normal((rank, out_dims)) / rank ** 0.5
            scale = size * rms * in_dims ** 0.5
            stack.add(mx.array(a, dtype=mx.float32), mx.array(b, dtype=mx.float32), scale)
        yield


@contextmanager
def boosted_expert(model, folder: Path, boost: float):
    """An expert the model already wears, worn `boost` times more (1.0: twice): its
    low-rank pairs added once more, at `boost` × its scale, to the layers that
    already wear it (no new layer is wrapped; mlx_lora.attach would)."""
    config, weights = mlx_lora.read_expert(folder)
    scale = float(config.get("lora_parameters", {}).get("scale", 1.0)) * boost
    modules = dict(model.named_modules())
    with _removed_after(model):
        for key, lora_a in weights.items():
            name, _, leaf = key.rpartition(".")
            stack = modules.get(name)
            if leaf == "lora_a" and isinstance(stack, ExpertStack):
                stack.add(lora_a, weights[f"{name}.lora_b"], scale)
        yield


def pick(model, wear: list[dict], expert_folder, options, rng: random.Random):
    """(what it is, a context manager switching it on, the worn expert chosen or
    None) for tonight's dreams."""
    if not options.dream_random_expert:
        return "none", nullcontext(), None
    if wear and rng.random() < 0.5:
        row = rng.choice(wear)
        return (f"expert {row['path']}",
                boosted_expert(model, expert_folder(row["path"]), options.dream_boost), row)
    return "noise", noise_expert(model, options.dream_noise_rank, options.dream_noise,
                                 rng.randrange(2**31)), None
