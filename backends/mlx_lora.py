"""Wearing several LoRA experts at once on an MLX model.

mlx-lm's LoRALinear holds exactly one adapter. A personal model wears many (each
night adds one, the hierarchy merges them), so attached experts go into an
`ExpertStack` that wraps the frozen linear layer and adds every expert's low-rank
update. An expert on disk is an mlx-lm adapter folder (`adapter_config.json` +
`adapters.safetensors`, keys like `model.layers.3.self_attn.q_proj.lora_a`), so
mlx-lm's own tools can read a single expert too.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_unflatten

from pocketsleep.errors import InputError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapters.safetensors"


class ExpertStack(nn.Module):
    """A frozen linear layer plus a list of frozen low-rank experts."""

    def __init__(self, linear: nn.Module):
        super().__init__()
        self.linear = linear
        self.lora_as: list[mx.array] = []
        self.lora_bs: list[mx.array] = []
        self.scales: list[float] = []
        self.freeze()

    def add(self, lora_a: mx.array, lora_b: mx.array, scale: float) -> None:
        self.lora_as.append(lora_a)
        self.lora_bs.append(lora_b)
        self.scales.append(scale)
        self.freeze()

    def __call__(self, x: mx.array) -> mx.array:
        y = self.linear(x)
        for a, b, s in zip(self.lora_as, self.lora_bs, self.scales):
            y = y + (s * ((x @ a.astype(x.dtype)) @ b.astype(x.dtype))).astype(y.dtype)
        return y


def read_expert(path: Path) -> tuple[dict, dict[str, mx.array]]:
    """Load an expert folder: its config and its weights, checked."""
    path = Path(path)
    config_file, weights_file = path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS
    if not config_file.is_file() or not weights_file.is_file():
        raise InputError(
            f"{path} is not an expert folder (needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        weights = mx.load(str(weights_file))
    except (ValueError, RuntimeError, OSError) as e:
        raise InputError(f"expert {path} is damaged ({e}); remove it or re-run sleep") from None
    return config, weights


def attach(model: nn.Module, path: Path, scale: float = 1.0) -> int:
    """Switch on the expert in `path`; returns the number of layers it touches.

    `scale` multiplies the expert's own LoRA scale (1.0 = as trained).
    """
    config, weights = read_expert(path)
    lora_scale = float(config.get("lora_parameters", {}).get("scale", 1.0)) * scale
    modules = dict(model.named_modules())
    pairs: dict[str, dict[str, mx.array]] = {}
    for key, value in weights.items():
        name, _, leaf = key.rpartition(".")
        if leaf not in ("lora_a", "lora_b"):
            raise InputError(f"expert {path}: unexpected tensor {key}")
        pairs.setdefault(name, {})[leaf] = value
    wrapped = []
    for name, pair in pairs.items():
        target = modules.get(name)
        if target is None or set(pair) != {"lora_a", "lora_b"}:
            raise InputError(f"expert {path} does not fit this model (layer {name})")
        if not isinstance(target, ExpertStack):
            target = ExpertStack(target)
            wrapped.append((name, target))
        out_dims = target.linear.weight.shape[0]
        if pair["lora_b"].shape[-1] != out_dims:
            raise InputError(f"expert {path} does not fit this model (shape of {name})")
        target.add(pair["lora_a"], pair["lora_b"], lora_scale)
    if wrapped:
        model.update_modules(tree_unflatten(wrapped))
    return len(pairs)


def detach_all(model: nn.Module) -> None:
    """Remove every attached expert, restoring the plain frozen layers."""
    plain = [(name, m.linear) for name, m in model.named_modules() if isinstance(m, ExpertStack)]
    if plain:
        model.update_modules(tree_unflatten(plain))
