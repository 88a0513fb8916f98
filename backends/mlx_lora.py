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
from contextlib import contextmanager
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from pocketsleep.errors import InputError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapters.safetensors"


class ExpertStack(nn.Module):
    """A frozen linear layer, a list of frozen low-rank experts, and at most one
    trainable expert (`new_a`, `new_b`): tonight's, while sleep trains it."""

    def __init__(self, linear: nn.Module):
        super().__init__()
        self.linear = linear
        # Frozen experts are kept outside the module's parameter tree (a plain
        # attribute, not a registered list): they are never trained, and a list of
        # frozen arrays in the tree confuses optimizer updates.
        object.__setattr__(self, "experts", [])  # [(lora_a, lora_b, scale)]
        self.new_scale = 0.0
        self.freeze()

    @property
    def has_new(self) -> bool:
        return "new_a" in self

    def add(self, lora_a: mx.array, lora_b: mx.array, scale: float) -> None:
        self.experts.append((lora_a, lora_b, scale))

    def __call__(self, x: mx.array) -> mx.array:
        y = self.linear(x)
        for a, b, s in self.experts:
            y = y + (s * ((x @ a.astype(x.dtype)) @ b.astype(x.dtype))).astype(y.dtype)
        if "new_a" in self:
            y = y + (self.new_scale * ((x @ self.new_a) @ self.new_b)).astype(y.dtype)
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


def add_trainable_expert(
    model: nn.Module, num_layers: int, keys: list[str], rank: int, scale: float, seed: int = 0
) -> list[str]:
    """Parameter expansion: give the last `num_layers` blocks a new low-rank expert on
    the projections named in `keys` (e.g. "self_attn.q_proj"); freeze everything else.

    As in LoRA, A starts small and random and B at zero, so the model's output is
    unchanged until training moves B. Returns the full names of the touched layers.
    """
    model.freeze()
    key = mx.random.key(seed)
    layers = model.layers[-num_layers:] if num_layers > 0 else []
    offset = len(model.layers) - len(layers)
    touched, wrapped = [], []
    modules = dict(model.named_modules())
    for i, _ in enumerate(layers, start=offset):
        for k in keys:
            name = f"model.layers.{i}.{k}"
            target = modules.get(name)
            if target is None:
                raise InputError(f"this model has no layer {name}; check the expert keys")
            if not isinstance(target, ExpertStack):
                target = ExpertStack(target)
                wrapped.append((name, target))
            out_dims, in_dims = target.linear.weight.shape
            if isinstance(target.linear, nn.QuantizedLinear):
                in_dims = in_dims * 32 // target.linear.bits
            key, sub = mx.random.split(key)
            bound = 1 / in_dims**0.5
            target.new_a = mx.random.uniform(-bound, bound, (in_dims, rank), key=sub)
            target.new_b = mx.zeros((rank, out_dims))
            target.new_scale = scale
            target.unfreeze(keys=["new_a", "new_b"], recurse=False)
            touched.append(name)
    if wrapped:
        model.update_modules(tree_unflatten(wrapped))
    return touched


def trainable_expert_weights(model: nn.Module) -> dict[str, mx.array]:
    """Tonight's expert in mlx-lm's adapter layout (`<layer>.lora_a` / `.lora_b`)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, ExpertStack) and m.has_new:
            out[f"{name}.lora_a"] = m.new_a
            out[f"{name}.lora_b"] = m.new_b
    return out


def trainable_snapshot(model: nn.Module) -> list[tuple[str, mx.array]]:
    """Tonight's expert's weights as they are now, for restore_trainable. Arrays are
    immutable (an optimizer step makes new ones), so this holds the old values."""
    return tree_flatten(model.trainable_parameters())


def restore_trainable(model: nn.Module, snapshot: list[tuple[str, mx.array]]) -> None:
    """Put tonight's expert back as it was at `snapshot`."""
    model.update(tree_unflatten(snapshot))


def scale_trainable(model: nn.Module, factor: float) -> None:
    """Tonight's expert at `factor` of its strength: its B matrices scaled, so that
    what it adds to every layer (scale · x·A·B) is scaled, and the expert written
    afterwards is the scaled one."""
    for _, m in model.named_modules():
        if isinstance(m, ExpertStack) and m.has_new:
            m.new_b = m.new_b * factor


def save_trainable_expert(model: nn.Module, folder: Path, config: dict) -> None:
    """Write tonight's expert as an mlx-lm adapter folder (caller makes it atomic)."""
    folder.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(folder / ADAPTER_WEIGHTS), trainable_expert_weights(model))
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))


@contextmanager
def without_trainable_expert(model: nn.Module):
    """Temporarily switch tonight's expert off: the model is then the pre-sleep
    personal model (the teacher, and the gate's "before")."""
    stacks = [m for _, m in model.named_modules() if isinstance(m, ExpertStack) and m.has_new]
    scales = [m.new_scale for m in stacks]
    for m in stacks:
        m.new_scale = 0.0
    try:
        yield model
    finally:
        for m, scale in zip(stacks, scales):
            m.new_scale = scale


def drop_trainable_expert(model: nn.Module) -> None:
    for _, m in model.named_modules():
        if isinstance(m, ExpertStack) and m.has_new:
            del m["new_a"], m["new_b"]
            m.new_scale = 0.0


def detach_all(model: nn.Module) -> None:
    """Remove every attached expert, restoring the plain frozen layers."""
    plain = [(name, m.linear) for name, m in model.named_modules() if isinstance(m, ExpertStack)]
    if plain:
        model.update_modules(tree_unflatten(plain))
