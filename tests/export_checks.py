"""Helpers shared by the GGUF export tests: llama.cpp as the reference, experts.

llama.cpp keeps its KV cache in f16 unless told otherwise (that alone moves logits
by ~1e-3), so every comparison loads models with an f32 KV cache.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np
import pytest

PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
TEXT = "The quick brown fox remembers Tuesday at 10:30, hello world 12345!"


def llamacpp():
    return pytest.importorskip("llama_cpp")


def llamacpp_model(path: Path, **kw):
    lc = llamacpp()
    kw.setdefault("n_ctx", 256)
    return lc.Llama(str(path), logits_all=True, verbose=False,
                    type_k=lc.GGML_TYPE_F32, type_v=lc.GGML_TYPE_F32, **kw)


def llamacpp_logits(path: Path, ids: list[int], adapters: list[Path] = (), **kw) -> np.ndarray:
    """Logits of llama.cpp on `ids`, wearing the GGUF LoRA `adapters` (scale 1 each)."""
    lc = llamacpp()
    llm = llamacpp_model(path, **kw)
    loaded = []
    try:
        for a in adapters:
            handle = lc.llama_adapter_lora_init(llm.model, str(a).encode())
            assert handle, f"llama.cpp refused {a}"
            loaded.append(handle)
        if loaded:
            array = (lc.llama_adapter_lora_p_ctypes * len(loaded))(*loaded)
            scales = (ctypes.c_float * len(loaded))(*[1.0] * len(loaded))
            assert lc.llama_set_adapters_lora(llm.ctx, array, len(loaded), scales) == 0
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        if loaded:
            lc.llama_set_adapters_lora(llm.ctx, None, 0, None)
        llm.close()  # frees the adapters too: they belong to the model


def mlx_logits(model, ids: list[int]) -> np.ndarray:
    import mlx.core as mx

    return np.array(model(mx.array([ids]))[0].astype(mx.float32))


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """Max absolute difference over the logit scale (max |ref|)."""
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def write_lora_expert(folder: Path, model, layers=(0, 1), projections=PROJECTIONS, rank=4,
                      scale=2.0, seed=1, size=0.2) -> Path:
    """An mlx-lm adapter folder (as sleep writes one) for `model`, random A and B."""
    import mlx.core as mx

    rng = np.random.default_rng(seed)
    modules = dict(model.named_modules())
    weights = {}
    for i in layers:
        for proj in projections:
            name = f"model.layers.{i}.{proj}"
            out_dims, in_dims = modules[name].weight.shape
            weights[f"{name}.lora_a"] = mx.array(rng.standard_normal((in_dims, rank), np.float32) * size)
            weights[f"{name}.lora_b"] = mx.array(rng.standard_normal((rank, out_dims), np.float32) * size)
    folder.mkdir(parents=True)
    mx.save_safetensors(str(folder / "adapters.safetensors"), weights)
    (folder / "adapter_config.json").write_text(json.dumps({
        "fine_tune_type": "lora", "num_layers": len(layers),
        "lora_parameters": {"rank": rank, "scale": scale, "dropout": 0.0},
    }))
    return folder


def gguf_fields(path: Path) -> dict:
    """Every metadata value of a GGUF (gguf-py's reader: independent of our own)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def gguf_tensors(path: Path) -> dict:
    """name -> (ggml type name, shape as GGUF stores it (ne order), float32 data)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    out = {}
    for t in reader.tensors:
        data = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32)
        out[t.name] = (t.tensor_type.name, tuple(int(n) for n in t.shape), data)
    return out
