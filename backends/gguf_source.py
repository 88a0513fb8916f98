"""The model an export reads: a GGUF file or an MLX / Hugging Face folder, seen the
same way — GGUF tensor names, GGUF layout, float32, one tensor at a time.

Part of the GGUF export (gguf_export.py, gguf_lora.py); the inverse of the import
(gguf_import.py / gguf_weights.py), whose name tables and checks it reuses:

- a GGUF source keeps its metadata (architecture keys, tokenizer, chat template)
  as it is and has its tensors dequantised by the import's reader;
- an MLX folder has its config.json turned into llama.cpp's architecture keys, its
  tokenizer.json into GGUF vocabulary keys (gguf_vocab.py), its Hugging Face
  tensor names into GGUF names, and the q/k rows of llama models permuted the way
  llama.cpp's convert_hf_to_gguf.py does (the inverse of `gguf_weights.unpermute`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from pocketsleep.errors import InputError

from .gguf_weights import _HF_NAMES, _TOP_NAMES, hf_name

SUPPORTED_ARCHITECTURES = ("llama", "qwen2")
ROPE_FREQS = "rope_freqs.weight"
# Metadata of a GGUF source that an export writes afresh (or must not copy).
_NOT_COPIED = ("general.architecture", "general.file_type", "general.quantization_version",
               "general.alignment")

_GGUF_BLOCK_NAMES = {hf: g for g, hf in _HF_NAMES.items()}
_GGUF_TOP_NAMES = {hf: g for g, hf in _TOP_NAMES.items()}


@dataclass
class ModelSource:
    """A model to export, described without reading its tensors."""

    path: Path
    format: str                       # "gguf" or "mlx"
    arch: str                         # "llama" or "qwen2"
    name: str
    n_head: int
    n_kv_head: int
    shapes: dict[str, tuple[int, ...]]  # GGUF tensor name -> shape (numpy order), file order
    _metadata: Callable[[], dict] = field(repr=False)
    _tensors: Callable[[], Iterator[tuple[str, np.ndarray]]] = field(repr=False)

    def metadata(self) -> dict:
        """GGUF metadata to write (all but general.architecture / file_type)."""
        return self._metadata()

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """(GGUF name, float32 array in GGUF layout), in the order of `shapes`."""
        return self._tensors()

    def to_gguf_layout(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows of a Hugging Face-layout q/k projection (or its update) in llama.cpp's
        order; other tensors unchanged."""
        if self.arch == "llama" and ".attn_q." in name:
            return permute(rows, self.n_head)
        if self.arch == "llama" and ".attn_k." in name:
            return permute(rows, self.n_kv_head)
        return rows


def open_source(path: Path) -> ModelSource:
    """The model at `path`: a .gguf file or an MLX / Hugging Face folder."""
    path = Path(path)
    if path.is_dir():
        return _mlx_source(path)
    return _gguf_source(path)


def permute(w, n_head: int):
    """llama.cpp's q/k row order: rows (head, 2, half) become (head, half, 2).

    The inverse of `gguf_weights.unpermute`; works on numpy and MLX arrays, on
    matrices (rows × columns) and on biases.
    """
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_base_name(hf_module: str) -> str | None:
    """"blk.3.attn_q" for "model.layers.3.self_attn.q_proj" (None if unknown)."""
    if hf_module in _GGUF_TOP_NAMES:
        return _GGUF_TOP_NAMES[hf_module]
    prefix = "model.layers."
    if hf_module.startswith(prefix):
        layer, _, rest = hf_module[len(prefix):].partition(".")
        if layer.isdigit() and rest in _GGUF_BLOCK_NAMES:
            return f"blk.{layer}.{_GGUF_BLOCK_NAMES[rest]}"
    return None


def unsupported_architecture(path: Path, arch) -> InputError:
    return InputError(f"{path}: architecture '{arch}' cannot be exported to GGUF (supported: "
                      f"{', '.join(SUPPORTED_ARCHITECTURES)})")


# ---------------------------------------------------------------- GGUF files


def _gguf_source(path: Path) -> ModelSource:
    from .gguf_file import read_header
    from .gguf_import import _check_supported
    from .gguf_weights import read_tensors

    header = read_header(path)
    arch = header.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise unsupported_architecture(path, arch)
    _check_supported(header)
    for name in header.tensors:
        base, _, kind = name.rpartition(".")
        if name != ROPE_FREQS and (hf_name(base) is None or kind not in ("weight", "bias")):
            raise InputError(f"{path}: unexpected tensor '{name}' for a {arch} model; this "
                             "GGUF layout cannot be exported")
    n_head = int(header.arch_get("attention.head_count"))

    def metadata() -> dict:
        return {k: v for k, v in header.metadata.items()
                if k not in _NOT_COPIED and not k.startswith(("split.", "GGUF."))}

    def tensors():
        import mlx.core as mx

        for name, w in read_tensors(header):
            yield name, np.array(w.astype(mx.float32))

    return ModelSource(
        path=path, format="gguf", arch=arch, name=header.get("general.name") or path.stem,
        n_head=n_head, n_kv_head=int(header.arch_get("attention.head_count_kv", n_head)),
        shapes={name: info.shape for name, info in header.tensors.items()},
        _metadata=metadata, _tensors=tensors,
    )


# ---------------------------------------------------------------- MLX folders


def _mlx_source(folder: Path) -> ModelSource:
    import mlx.core as mx

    from pocketsleep.models import check_mlx_folder

    check_mlx_folder(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    arch = config.get("model_type")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise unsupported_architecture(folder, arch)
    hp = _hparams(folder, config)
    try:
        weights = {}
        for f in sorted(folder.glob("*.safetensors")):
            weights.update(mx.load(str(f)))  # lazy: nothing is read until used
    except (RuntimeError, ValueError, OSError) as e:
        raise InputError(f"{folder}: cannot read the weights ({e}); the folder is damaged") from None

    quant = config.get("quantization") or config.get("quantization_config")
    plan: dict[str, tuple[str, tuple[int, ...], dict | None]] = {}  # gguf -> (hf, shape, q)
    for key, w in weights.items():
        base, _, kind = key.rpartition(".")
        if kind in ("scales", "biases") and f"{base}.weight" in weights:
            continue
        if "rotary_emb.inv_freq" in key or (key.startswith("lm_head.") and hp["tie"]):
            continue
        g = gguf_base_name(base)
        if g is None or kind not in ("weight", "bias"):
            raise InputError(f"{folder}: unexpected tensor '{key}' for a {arch} model; "
                             "it cannot be exported to GGUF")
        shape, q = tuple(w.shape), None
        if kind == "weight" and f"{base}.scales" in weights:
            q = _layer_quantization(folder, quant, base)
            shape = (*shape[:-1], shape[-1] * 32 // q["bits"])
        plan[f"{g}.{kind}"] = (key, shape, q)
    if "token_embd.weight" not in plan:
        raise InputError(f"{folder}: has no model.embed_tokens.weight; the folder is incomplete")
    if not hp["tie"] and "output.weight" not in plan:
        raise InputError(f"{folder}: config says tie_word_embeddings is false but there is no "
                         "lm_head.weight; the folder is incomplete")
    order = sorted(plan, key=_tensor_order)
    shapes = {name: plan[name][1] for name in order}
    if hp["rope_freqs"] is not None:
        shapes = {ROPE_FREQS: hp["rope_freqs"].shape, **shapes}

    def tensors():
        if hp["rope_freqs"] is not None:
            yield ROPE_FREQS, hp["rope_freqs"]
        for name in order:
            key, _, q = plan[name]
            w = weights[key]
            if q is not None:
                base = key.rpartition(".")[0]
                w = mx.dequantize(w, weights[f"{base}.scales"], weights.get(f"{base}.biases"),
                                  group_size=q["group_size"], bits=q["bits"])
            yield name, source.to_gguf_layout(name, np.array(w.astype(mx.float32)))

    source = ModelSource(
        path=folder, format="mlx", arch=arch, name=folder.name, n_head=hp["n_head"],
        n_kv_head=hp["n_kv_head"], shapes=shapes,
        _metadata=lambda: _mlx_metadata(folder, config, hp, shapes["token_embd.weight"][0]),
        _tensors=tensors,
    )
    return source


def _tensor_order(name: str):
    parts = name.split(".")
    if parts[0] == "blk":
        return (1, int(parts[1]), name)
    return ({"token_embd": 0, "output_norm": 2, "output": 3}.get(parts[0], 4), 0, name)


def _layer_quantization(folder: Path, quant, base: str) -> dict:
    if not isinstance(quant, dict):
        raise InputError(f"{folder}: quantised weights but no 'quantization' in config.json; "
                         "the folder is damaged")
    q = quant.get(base, quant)
    q = q if isinstance(q, dict) else quant
    if q.get("mode", "affine") != "affine" or "bits" not in q:
        raise InputError(f"{folder}: quantisation mode '{q.get('mode')}' cannot be exported; "
                         "dequantise the model first (mlx_lm.convert --dequantize)")
    return {"bits": int(q["bits"]), "group_size": int(q.get("group_size", 64))}


def _hparams(folder: Path, config: dict) -> dict:
    arch = config["model_type"]
    try:
        hidden = int(config["hidden_size"])
        n_head = int(config["num_attention_heads"])
        hp = {
            "hidden": hidden, "n_head": n_head,
            "n_kv_head": int(config.get("num_key_value_heads") or n_head),
            "n_layers": int(config["num_hidden_layers"]),
            "ffn": int(config["intermediate_size"]),
            "eps": float(config["rms_norm_eps"]),
            "head_dim": int(config.get("head_dim") or hidden // n_head),
            "n_ctx": int(config.get("max_position_embeddings")
                         or (4096 if arch == "llama" else 32768)),
            "theta": float(config.get("rope_theta") or (10000.0 if arch == "llama" else 1e6)),
            "tie": bool(config.get("tie_word_embeddings", True)),
        }
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{folder}/config.json: missing or invalid {e}; the folder is damaged") from None
    if config.get("rope_traditional"):
        raise InputError(f"{folder}: rope_traditional models cannot be exported to GGUF")
    if any(t != "full_attention" for t in config.get("layer_types") or []):
        raise InputError(f"{folder}: sliding-window layers cannot be exported to GGUF")
    if float(config.get("partial_rotary_factor", 1.0)) != 1.0:
        raise InputError(f"{folder}: partial rotary embeddings cannot be exported to GGUF")
    hp["rope_scaling"], hp["rope_freqs"] = _rope(folder, config.get("rope_scaling"), hp)
    return hp


def _rope(folder: Path, scaling, hp: dict):
    """(linear factor or None, llama.cpp rope_freqs tensor or None) for HF rope_scaling."""
    if not scaling:
        return None, None
    kind = scaling.get("rope_type") or scaling.get("type")
    if kind == "default":
        return None, None
    if kind == "linear":
        return float(scaling["factor"]), None
    if kind == "llama3":
        # As llama.cpp's convert_hf_to_gguf.py writes Llama 3.1's rope factors.
        factor = float(scaling.get("factor", 8.0))
        low, high = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
        old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
        dim, out = hp["head_dim"], []
        for i in range(0, dim, 2):
            wavelen = 2 * math.pi * hp["theta"] ** (i / dim)
            if wavelen < old_ctx / high:
                out.append(1.0)
            elif wavelen > old_ctx / low:
                out.append(factor)
            else:
                smooth = (old_ctx / wavelen - low) / (high - low)
                out.append(1 / ((1 - smooth) / factor + smooth))
        return None, np.array(out, np.float32)
    raise InputError(f"{folder}: rope scaling '{kind}' cannot be exported to GGUF "
                     "(supported: none, linear, llama3)")


def _mlx_metadata(folder: Path, config: dict, hp: dict, n_vocab: int) -> dict:
    from .gguf_vocab import tokenizer_metadata

    a = config["model_type"]
    meta = {
        "general.type": "model",
        "general.name": folder.name,
        f"{a}.context_length": hp["n_ctx"],
        f"{a}.embedding_length": hp["hidden"],
        f"{a}.block_count": hp["n_layers"],
        f"{a}.feed_forward_length": hp["ffn"],
        f"{a}.attention.head_count": hp["n_head"],
        f"{a}.attention.head_count_kv": hp["n_kv_head"],
        f"{a}.rope.dimension_count": hp["head_dim"],
        f"{a}.rope.freq_base": hp["theta"],
        f"{a}.attention.layer_norm_rms_epsilon": hp["eps"],
        f"{a}.vocab_size": n_vocab,
    }
    if hp["head_dim"] != hp["hidden"] // hp["n_head"]:
        meta[f"{a}.attention.key_length"] = hp["head_dim"]
        meta[f"{a}.attention.value_length"] = hp["head_dim"]
    if hp["rope_scaling"] is not None:
        meta[f"{a}.rope.scaling.type"] = "linear"
        meta[f"{a}.rope.scaling.factor"] = hp["rope_scaling"]
    meta.update(tokenizer_metadata(folder, n_vocab, hp["n_ctx"]))
    return meta
