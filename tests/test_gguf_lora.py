"""Experts as GGUF LoRA adapters (pocketsleep.backends.gguf_lora).

The check that matters: llama.cpp running the base GGUF with the exported adapters
computes what MLX computes wearing the experts, and what the fused export computes.
"""

from __future__ import annotations

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
pytest.importorskip("mlx_lm")
gguf = pytest.importorskip("gguf")

from export_checks import (TEXT, gguf_fields, gguf_tensors, llamacpp, llamacpp_logits,  # noqa: E402
                           mlx_logits, relative_error, write_lora_expert)
from tiny_models import write_tiny_gguf  # noqa: E402

from pocketsleep.backends import mlx_lora  # noqa: E402
from pocketsleep.backends.gguf_export import export_gguf  # noqa: E402
from pocketsleep.backends.gguf_import import convert_gguf, load_gguf  # noqa: E402
from pocketsleep.backends.gguf_lora import write_expert_gguf, write_lora_gguf  # noqa: E402
from pocketsleep.backends.gguf_source import permute  # noqa: E402
from pocketsleep.errors import InputError  # noqa: E402


@pytest.fixture(params=["llama", "qwen2"])
def tiny(request, tmp_path):
    t = write_tiny_gguf(tmp_path / f"{request.param}.gguf", arch=request.param)
    model, tok = load_gguf(t.path)
    return t, model, tok


def test_base_plus_adapters_matches_fused_export_and_mlx(tiny, tmp_path):
    t, model, tok = tiny
    e1 = write_lora_expert(tmp_path / "e1", model, layers=(0, 1), seed=1)
    e2 = write_lora_expert(tmp_path / "e2", model, layers=(1,), rank=8, scale=0.5, seed=2)
    ids = tok.encode(TEXT)
    base = mlx_logits(model, ids)
    a1 = tmp_path / "e1.gguf"
    a2 = tmp_path / "e2.gguf"
    write_lora_gguf(e1, a1, t.path)
    write_lora_gguf(e2, a2, t.path)

    mlx_lora.attach(model, e1)
    ref1 = mlx_logits(model, ids)
    mlx_lora.attach(model, e2)
    ref12 = mlx_logits(model, ids)

    # One adapter, the llama-cpp-python way (Llama(lora_path=...)) ...
    one = llamacpp_logits(t.path, ids, lora_path=str(a1))
    # ... and two at once, as the llama.cpp engine attaches experts.
    two = llamacpp_logits(t.path, ids, adapters=[a1, a2])
    fused = llamacpp_logits(export_gguf(t.path, tmp_path / "fused.gguf", "f32", [e1, e2]).path, ids)
    for label, ours, ref in (("1 adapter vs MLX", one, ref1), ("2 adapters vs MLX", two, ref12),
                             ("2 adapters vs fused export", two, fused)):
        print(f"\n{t.arch} {label}: max |logit diff| {np.abs(ours - ref).max():.3g}")
        assert relative_error(ours, ref) < 1e-5, label
    assert np.abs(ref12 - base).max() > 1 and np.abs(ref12 - ref1).max() > 0.1


def test_adapter_layout_is_peft_with_alpha_scale_times_rank(tmp_path):
    t = write_tiny_gguf(tmp_path / "t.gguf", arch="llama")
    model, _ = load_gguf(t.path)
    e = write_lora_expert(tmp_path / "e", model, layers=(1,), rank=4, scale=2.5)
    size = write_lora_gguf(e, tmp_path / "a.gguf", t.path)
    assert size == (tmp_path / "a.gguf").stat().st_size
    fields = gguf_fields(tmp_path / "a.gguf")
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["general.architecture"] == "llama"
    assert fields["adapter.lora.alpha"] == pytest.approx(10.0)
    tensors = gguf_tensors(tmp_path / "a.gguf")
    assert len(tensors) == 2 * 7
    weights = mx.load(str(e / "adapters.safetensors"))
    a = np.array(weights["model.layers.1.self_attn.k_proj.lora_a"])  # in × r
    b = np.array(weights["model.layers.1.self_attn.k_proj.lora_b"])  # r × out
    kind, ne, data = tensors["blk.1.attn_k.weight.lora_a"]
    assert kind == "F32" and ne == (64, 4)  # GGUF ne order: [in, r]
    np.testing.assert_array_equal(data, a.T)
    kind, ne, data = tensors["blk.1.attn_k.weight.lora_b"]
    assert ne == (4, 32)  # [r, out]
    np.testing.assert_array_equal(data, permute(b.T, 2))  # q/k rows as llama.cpp orders them
    np.testing.assert_array_equal(tensors["blk.1.attn_v.weight.lora_b"][2],
                                  np.array(weights["model.layers.1.self_attn.v_proj.lora_b"]).T)


def test_adapter_for_an_mlx_folder_base_equals_the_one_for_its_gguf(tmp_path):
    t = write_tiny_gguf(tmp_path / "t.gguf", arch="qwen2")
    folder = convert_gguf(t.path, tmp_path / "mlx")
    e = write_lora_expert(tmp_path / "e", load_gguf(t.path)[0])
    write_lora_gguf(e, tmp_path / "from-gguf.gguf", t.path)
    write_lora_gguf(e, tmp_path / "from-folder.gguf", folder)
    assert (tmp_path / "from-gguf.gguf").read_bytes() == (tmp_path / "from-folder.gguf").read_bytes()


def test_zero_scale_expert_is_the_base_model(tmp_path):
    t = write_tiny_gguf(tmp_path / "t.gguf", arch="llama")
    model, tok = load_gguf(t.path)
    e = write_lora_expert(tmp_path / "e", model, scale=0.0)
    write_lora_gguf(e, tmp_path / "a.gguf", t.path)
    ids = tok.encode(TEXT)
    np.testing.assert_allclose(llamacpp_logits(t.path, ids, lora_path=str(tmp_path / "a.gguf")),
                               llamacpp_logits(t.path, ids), atol=1e-5, rtol=0)


def test_expert_gguf_inside_the_folder_serves_the_llamacpp_engine(tmp_path):
    llamacpp()
    from pocketsleep.backends.llamacpp_engine import GGUF_ADAPTER, LlamaCppEngine

    t = write_tiny_gguf(tmp_path / "t.gguf", arch="llama")
    e = write_lora_expert(tmp_path / "e", load_gguf(t.path)[0])
    assert write_expert_gguf(e, t.path) == e / GGUF_ADAPTER
    write_expert_gguf(e, t.path)  # again: replaced in place
    assert sorted(p.name for p in e.iterdir()) == ["adapter.gguf", "adapter_config.json",
                                                    "adapters.safetensors"]
    fused = export_gguf(t.path, tmp_path / "fused.gguf", "f32", [e]).path
    messages = [{"role": "user", "content": "hello world"}]
    engine = LlamaCppEngine(t.path, "tiny", n_ctx=256)
    try:
        plain = engine.score(messages, "the fox")
        engine.attach_expert(e)
        worn = engine.score(messages, "the fox")
    finally:
        engine.close()
    reference = LlamaCppEngine(fused, "fused", n_ctx=256)
    try:
        expected = reference.score(messages, "the fox")
    finally:
        reference.close()
    # The engine keeps llama.cpp's default f16 KV cache: close, not exact.
    np.testing.assert_allclose(worn, expected, atol=2e-2, rtol=0)
    assert np.abs(np.array(plain) - np.array(expected)).max() > 0.1


def test_experts_that_cannot_be_exported(tmp_path):
    t = write_tiny_gguf(tmp_path / "t.gguf", arch="llama")
    other = load_gguf(write_tiny_gguf(tmp_path / "big.gguf", hidden=128, ffn=256).path)[0]
    e = write_lora_expert(tmp_path / "e", other)
    with pytest.raises(InputError, match="does not fit the model"):
        write_lora_gguf(e, tmp_path / "a.gguf", t.path)
    dora = write_lora_expert(tmp_path / "dora", load_gguf(t.path)[0])
    (dora / "adapter_config.json").write_text('{"fine_tune_type": "dora"}')
    with pytest.raises(InputError, match="fine_tune_type 'dora'"):
        write_lora_gguf(dora, tmp_path / "a.gguf", t.path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{}")
    (broken / "adapters.safetensors").write_bytes(b"nonsense")
    with pytest.raises(InputError, match="is damaged"):
        write_lora_gguf(broken, tmp_path / "a.gguf", t.path)
    assert not (tmp_path / "a.gguf").exists()
