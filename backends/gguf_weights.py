"""GGUF tensors -> Hugging Face-named MLX weights and an mlx-lm config.

Part of the GGUF import (see gguf_import.py). Tensors of the types mx.load reads
exactly (F32, F16, Q8_0, Q4_0, Q4_1; the quantised ones come back packed as MLX
affine quantisation, weight + scales + biases with group size 32) go through
mx.load and mx.dequantize; a file with any other type is read with numpy and
gguf-py's reference dequantiser throughout, because mx.load (mlx 0.32) fails on
Q5_K, Q3_K, Q5_0 and IQ4_* tensors and returns wrong numbers for Q4_K ones.
"""

from __future__ import annotations

import math

from pocketsleep.errors import InputError

from .gguf_file import GGUFHeader

# Tensor types mx.load reads exactly.
MLX_TYPES = ("F32", "F16", "Q8_0", "Q4_0", "Q4_1")
# Tensor types gguf-py's reference dequantiser expands (numpy, slower).
GGUF_PY_TYPES = ("BF16", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS")
SUPPORTED_TYPES = MLX_TYPES + GGUF_PY_TYPES

_HF_NAMES = {  # GGUF tensor name (after "blk.N.") -> Hugging Face name (after "model.layers.N.")
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_ARCH_CLASSES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}


def convert_weights(header: GGUFHeader, dtype: str) -> tuple[dict, dict]:
    """(Hugging Face-named weights as `dtype`, mlx-lm config) for a checked header."""
    import mlx.core as mx

    path = header.path
    arch = header.get("general.architecture")
    n_head = int(header.arch_get("attention.head_count"))
    n_kv = int(header.arch_get("attention.head_count_kv", n_head))
    target = getattr(mx, dtype)
    weights: dict = {}
    rope_freqs = None
    for name, w in read_tensors(header):
        base, _, kind = name.rpartition(".")  # kind: "weight" or "bias"
        if name == "rope_freqs.weight":
            rope_freqs = w
            continue
        hf = hf_name(base)
        if hf is None or kind not in ("weight", "bias"):
            raise InputError(f"{path}: unexpected tensor '{name}' for a {arch} model; this "
                             "GGUF layout is not supported, use an MLX folder of this model")
        # llama.cpp interleaves the two rotary halves of every q/k head (its
        # convert_hf_to_gguf.py `permute`); mlx-lm's llama rotates halves, as HF does.
        if arch == "llama" and base.endswith(".attn_q"):
            w = unpermute(w, n_head)
        elif arch == "llama" and base.endswith(".attn_k"):
            w = unpermute(w, n_kv)
        weights[f"{hf}.{kind}"] = w.astype(target)
        mx.eval(weights[f"{hf}.{kind}"])  # one tensor at a time: bounded peak memory
    config = model_config(header, weights, dtype, rope_freqs)
    return weights, config


def read_tensors(header: GGUFHeader):
    """Yield (GGUF name, float32 mx.array) for every tensor, dequantised exactly."""
    import mlx.core as mx

    path = header.path
    if all(t.type_name in MLX_TYPES for t in header.tensors.values()):
        try:
            raw = mx.load(str(path))
        except (RuntimeError, ValueError) as e:
            raise InputError(f"{path}: MLX cannot read this GGUF ({e}); check the file") from None
        for name in header.tensors:
            base = name.rpartition(".")[0]
            w = raw.pop(name)
            if f"{base}.scales" in raw:  # packed: expand in float32 (scales are float16)
                scales = raw.pop(f"{base}.scales").astype(mx.float32)
                biases = raw.pop(f"{base}.biases").astype(mx.float32)
                bits = w.shape[-1] // scales.shape[-1]
                w = mx.dequantize(w, scales, biases, group_size=32, bits=bits)
            yield name, w.astype(mx.float32)
        return

    import numpy as np
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    data = np.memmap(path, dtype=np.uint8, mode="r")
    for name, info in header.tensors.items():
        start = header.data_offset + info.offset
        block = data[start:start + info.nbytes]
        if info.type_name == "F32":
            a = block.view(np.float32)
        elif info.type_name == "F16":
            a = block.view(np.float16).astype(np.float32)
        else:
            rows = math.prod(info.shape[:-1])
            a = dequantize(block.reshape(rows, -1), GGMLQuantizationType[info.type_name])
        yield name, mx.array(np.ascontiguousarray(a, dtype=np.float32).reshape(info.shape))


def hf_name(base: str) -> str | None:
    if base in _TOP_NAMES:
        return _TOP_NAMES[base]
    parts = base.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _HF_NAMES:
        return f"model.layers.{parts[1]}.{_HF_NAMES[parts[2]]}"
    return None


def unpermute(w, n_head: int):
    """Inverse of llama.cpp's permute(): rows (head, 2, half) were stored as (head, half, 2)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def head_dim(header: GGUFHeader) -> int:
    key_length = header.arch_get("attention.key_length")
    if key_length:
        return int(key_length)
    return int(header.arch_get("embedding_length")) // int(header.arch_get("attention.head_count"))


def model_config(header: GGUFHeader, weights: dict, dtype: str, rope_freqs) -> dict:
    arch = header.get("general.architecture")
    n_head = int(header.arch_get("attention.head_count"))
    n_layers = int(header.arch_get("block_count"))
    config = {
        "model_type": arch,
        "architectures": [_ARCH_CLASSES[arch]],
        "hidden_size": int(header.arch_get("embedding_length")),
        "num_hidden_layers": n_layers,
        "intermediate_size": int(header.arch_get("feed_forward_length")),
        "num_attention_heads": n_head,
        "num_key_value_heads": int(header.arch_get("attention.head_count_kv", n_head)),
        "rms_norm_eps": float(header.arch_get("attention.layer_norm_rms_epsilon", 1e-6)),
        "vocab_size": int(weights["model.embed_tokens.weight"].shape[0]),
        "max_position_embeddings": int(header.arch_get("context_length", 4096)),
        "rope_theta": float(header.arch_get("rope.freq_base", 10000.0 if arch == "llama" else 1e6)),
        "rope_traditional": False,
        "rope_scaling": None,
        "tie_word_embeddings": "lm_head.weight" not in weights,
        "torch_dtype": dtype,
    }
    if arch == "llama":
        config["head_dim"] = head_dim(header)
        config["attention_bias"] = "model.layers.0.self_attn.q_proj.bias" in weights
        config["mlp_bias"] = "model.layers.0.mlp.up_proj.bias" in weights
    if header.arch_get("rope.scaling.type") == "linear":
        config["rope_scaling"] = {"type": "linear",
                                  "factor": float(header.arch_get("rope.scaling.factor", 1.0))}
    if rope_freqs is not None:
        config["rope_scaling"] = rope_freqs_scaling(header, rope_freqs, config)
    return config


def rope_freqs_scaling(header: GGUFHeader, rope_freqs, config: dict) -> dict | None:
    """Express llama.cpp's per-dimension rope frequency factors (Llama 3.1+) in mlx-lm.

    llama.cpp divides rotary frequency i by `rope_freqs[i]`. Its converter computes
    them from HF's "llama3" scaling, so first look for the llama3 parameters that
    give these factors back (the usual defaults); failing that, use mlx-lm's
    "longrope" RoPE, which multiplies each period by `long_factor[i]`: the same
    thing, with no extra scale while max_position_embeddings equals the original.
    """
    import mlx.core as mx
    import numpy as np

    factors = np.asarray(rope_freqs.astype(mx.float32).tolist(), dtype=np.float64)
    dim = config["head_dim"]
    if factors.shape != (dim // 2,):
        raise InputError(f"{header.path}: rope_freqs has {factors.size} entries, expected "
                         f"{dim // 2}; use an MLX folder of this model")
    if np.allclose(factors, 1.0):
        return None
    base, factor = config["rope_theta"], float(factors.max())
    for old_ctx in (8192, 131072, 4096, 2048, 16384, 32768):
        low, high = 1.0, 4.0  # HF's defaults, used by every Llama 3.x
        wavelen = 2 * np.pi * base ** (np.arange(0, dim, 2) / dim)
        smooth = (old_ctx / wavelen - low) / (high - low)
        expect = np.where(wavelen < old_ctx / high, 1.0,
                          np.where(wavelen > old_ctx / low, factor,
                                   1 / ((1 - smooth) / factor + smooth)))
        if np.allclose(expect, factors, rtol=1e-4, atol=1e-6):
            return {"rope_type": "llama3", "factor": factor, "low_freq_factor": low,
                    "high_freq_factor": high, "original_max_position_embeddings": old_ctx}
    factors = [float(x) for x in factors]
    return {"rope_type": "longrope", "factor": 1.0,
            "original_max_position_embeddings": config["max_position_embeddings"],
            "short_factor": factors, "long_factor": factors}


def file_type_name(value) -> str | None:
    """"Q4_1" for general.file_type 3 (gguf-py's LlamaFileType without "MOSTLY_")."""
    if value is None:
        return None
    try:
        from gguf.constants import LlamaFileType

        return LlamaFileType(int(value)).name.removeprefix("MOSTLY_")
    except (ImportError, ValueError):
        return str(value)
