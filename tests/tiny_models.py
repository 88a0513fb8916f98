"""Tiny random GGUF models for tests, written in milliseconds without downloads.

`write_tiny_gguf(path)` writes a llama-family (or, with arch="qwen2", a qwen2-family)
model as llama.cpp's converter would: a byte-level BPE vocabulary with real merges,
ChatML special tokens and chat template, the q/k rows of llama models permuted the
llama.cpp way, and the weights quantised to the chosen type. llama.cpp loads it.
The returned `TinyModel` also holds the weights in Hugging Face layout and naming
(before quantisation), so a test can compare a conversion with the truth.

    from tiny_models import write_tiny_gguf
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf", arch="llama", qtype="Q8_0")
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
USER_DEFINED = ["<note>"]  # a user-defined token: always split out, never special
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = (
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox thinks.\n"
    "Hello, hello world! I remember that the meeting is on Tuesday at 10:30.\n"
    "def hello(name):\n    return 'hello ' + name\n\n"
    "My sister Anna lives in Lisbon and likes tea. 12345 + 678 = 13023\n"
)


@dataclass
class TinyModel:
    path: Path
    arch: str
    qtype: str
    config: dict
    tokens: list[str]
    merges: list[str]
    weights: dict[str, np.ndarray] = field(repr=False)  # HF names and layout, float32


def byte_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes, in byte order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def train_bpe(text: str, n_merges: int) -> list[tuple[str, str]]:
    """A deterministic toy BPE trainer over byte-level words (most frequent pair first)."""
    alphabet = byte_alphabet()
    words = Counter(
        tuple(alphabet[b] for b in w.encode("utf-8")) for w in re.findall(r" ?\w+| ?[^\w\s]+|\s+", text)
    )
    merges = []
    for _ in range(n_merges):
        pairs: Counter = Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged = Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += c
        words = merged
    return merges


def llama3_rope_factors(theta, head_dim, factor=8.0, low=1.0, high=4.0, old_ctx=8192):
    """rope_freqs as llama.cpp's convert_hf_to_gguf.py computes them for "llama3" scaling."""
    import math

    out = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi * theta ** (i / head_dim)
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, np.float32)


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py's q/k row permutation (HF halves -> interleaved)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(
    path: Path,
    arch: str = "llama",
    qtype: str = "F32",
    *,
    n_layers: int = 2,
    hidden: int = 64,
    n_head: int = 4,
    n_kv_head: int = 2,
    ffn: int = 128,
    n_ctx: int = 256,
    n_merges: int = 120,
    seed: int = 0,
    rope_freqs: bool | np.ndarray = False,
    chat_template: bool = True,
    tokenizer_model: str = "gpt2",
    tokenizer_pre: str | None = None,
) -> TinyModel:
    """Write a tiny random model to `path` and describe it.

    arch: "llama" (tied embeddings, pre-tokenizer "llama-bpe", BOS added) or "qwen2"
    (q/k/v biases, separate output matrix, pre-tokenizer "qwen2"); qtype: F32, F16,
    Q8_0, Q4_0 or Q4_1 for the 2-D matrices (norms stay F32, as in llama.cpp; any
    type gguf-py can quantise works, for testing refusals).
    rope_freqs: add a `rope_freqs.weight` tensor (llama only): True for the factors
    llama.cpp's converter writes for Llama 3.1's "llama3" rope scaling (factor 8,
    low/high frequency factors 1/4, original context 8192), or explicit factors.
    """
    import gguf

    path = Path(path)
    rng = np.random.default_rng(seed)
    merges = [f"{a} {b}" for a, b in train_bpe(CORPUS, n_merges)]
    tokens = SPECIALS + byte_alphabet()
    for m in merges:
        tok = m.replace(" ", "")
        if tok not in tokens:
            tokens.append(tok)
    tokens += USER_DEFINED
    types = ([gguf.TokenType.CONTROL] * len(SPECIALS)
             + [gguf.TokenType.NORMAL] * (len(tokens) - len(SPECIALS) - len(USER_DEFINED))
             + [gguf.TokenType.USER_DEFINED] * len(USER_DEFINED))
    n_vocab = len(tokens)
    head_dim = hidden // n_head
    theta = 10000.0 if arch == "llama" else 1000000.0

    def mat(rows, cols, scale=1.0):
        return (rng.standard_normal((rows, cols)) * scale / np.sqrt(cols)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    hf: dict[str, np.ndarray] = {"model.embed_tokens.weight": mat(n_vocab, hidden, 8.0)}
    for i in range(n_layers):
        p = f"model.layers.{i}."
        hf[p + "input_layernorm.weight"] = norm(hidden)
        hf[p + "self_attn.q_proj.weight"] = mat(n_head * head_dim, hidden, 2.0)
        hf[p + "self_attn.k_proj.weight"] = mat(n_kv_head * head_dim, hidden, 2.0)
        hf[p + "self_attn.v_proj.weight"] = mat(n_kv_head * head_dim, hidden)
        hf[p + "self_attn.o_proj.weight"] = mat(hidden, n_head * head_dim)
        if arch == "qwen2":
            for n, rows in (("q", n_head), ("k", n_kv_head), ("v", n_kv_head)):
                hf[p + f"self_attn.{n}_proj.bias"] = (0.1 * rng.standard_normal(rows * head_dim)).astype(np.float32)
        hf[p + "post_attention_layernorm.weight"] = norm(hidden)
        hf[p + "mlp.gate_proj.weight"] = mat(ffn, hidden)
        hf[p + "mlp.up_proj.weight"] = mat(ffn, hidden)
        hf[p + "mlp.down_proj.weight"] = mat(hidden, ffn)
    hf["model.norm.weight"] = norm(hidden)
    if arch == "qwen2":
        hf["lm_head.weight"] = mat(n_vocab, hidden, 4.0)

    qt = gguf.GGMLQuantizationType[qtype]
    file_type = getattr(gguf.LlamaFileType, f"MOSTLY_{qtype}", gguf.LlamaFileType.ALL_F32)

    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"tiny-{arch}")
    w.add_context_length(n_ctx)
    w.add_embedding_length(hidden)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv_head)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(file_type)
    w.add_tokenizer_model(tokenizer_model)
    w.add_tokenizer_pre(tokenizer_pre or ("llama-bpe" if arch == "llama" else "qwen2"))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(0)
    w.add_eos_token_id(2)
    w.add_pad_token_id(0)
    w.add_add_bos_token(arch == "llama")
    if chat_template:
        w.add_chat_template(CHATML)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    def gguf_name(name: str) -> str:
        name = name.replace("model.embed_tokens", "token_embd").replace("model.norm", "output_norm")
        name = name.replace("lm_head", "output").replace("model.layers.", "blk.")
        for hf_part, g in (("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm"),
                           ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
                           ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
                           ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
                           ("mlp.down_proj", "ffn_down")):
            name = name.replace(hf_part, g)
        return name

    for name, t in hf.items():
        if arch == "llama" and "q_proj" in name:
            t = _permute(t, n_head)
        elif arch == "llama" and "k_proj" in name:
            t = _permute(t, n_kv_head)
        if t.ndim == 2 and qt != gguf.GGMLQuantizationType.F32:
            data = gguf.quants.quantize(t, qt)
            w.add_tensor(gguf_name(name), data, raw_dtype=qt)
        else:
            w.add_tensor(gguf_name(name), t)
    if rope_freqs is not False:
        factors = llama3_rope_factors(theta, head_dim) if rope_freqs is True else rope_freqs
        w.add_tensor("rope_freqs.weight", np.asarray(factors, np.float32))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    config = dict(arch=arch, n_layers=n_layers, hidden=hidden, n_head=n_head,
                  n_kv_head=n_kv_head, ffn=ffn, n_ctx=n_ctx, n_vocab=n_vocab, rope_theta=theta)
    return TinyModel(path, arch, qtype, config, tokens, merges, hf)


def quantize_with_llamacpp(src: Path, dst: Path, ftype: str) -> Path:
    """Quantise a GGUF with llama.cpp's own quantiser (e.g. ftype "Q4_K_M", "IQ4_XS").

    k-quants need rows that are multiples of 256: write the source with hidden=256.
    Needs llama-cpp-python.
    """
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.nthread = 1
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)):
        raise RuntimeError(f"llama.cpp could not quantise {src} to {ftype}")
    return Path(dst)


def f32_twin(gguf_path: Path, out_path: Path) -> Path:
    """Write `gguf_path` again with every tensor expanded to F32 by gguf-py's reference
    dequantiser; names, layout (q/k permutation included) and metadata are unchanged.

    llama.cpp runs quantised matrices with quantised activations, so its outputs on a
    Q4 file differ from an exact float model; on this twin it computes in float32,
    which is what a converted MLX model must match.
    """
    import gguf
    import mlx.core as mx

    from pocketsleep.backends.gguf_file import read_header

    header = read_header(gguf_path)
    raw = np.memmap(gguf_path, dtype=np.uint8, mode="r")
    arrays = {}
    for name, info in header.tensors.items():
        start = header.data_offset + info.offset
        data = raw[start:start + info.nbytes]
        if info.type_name == "F32":
            a = data.view(np.float32).reshape(info.shape)
        else:
            rows = int(np.prod(info.shape[:-1]))
            a = gguf.quants.dequantize(data.reshape(rows, -1), gguf.GGMLQuantizationType[info.type_name])
            a = a.reshape(info.shape)
        arrays[name] = np.ascontiguousarray(a, dtype=np.float32)
    try:  # fast: mx.load keeps the metadata's types for mx.save_gguf
        _, meta = mx.load(str(gguf_path), return_metadata=True)
    except RuntimeError:  # mx.load refuses some k-quants: copy the metadata with gguf-py
        return _write_with_gguf_py(gguf_path, out_path, arrays)
    meta["general.file_type"] = mx.array(0, dtype=mx.uint32)  # ALL_F32
    mx.save_gguf(str(out_path), {k: mx.array(v) for k, v in arrays.items()}, meta)
    return Path(out_path)


def _write_with_gguf_py(gguf_path: Path, out_path: Path, arrays: dict) -> Path:
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    arch = reader.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(str(out_path), arch)
    for key, f in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
            continue
        sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, f.contents(), f.types[0], sub_type=sub)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    for name, a in arrays.items():
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(out_path)


# -- tiny in-memory MLX models and odd GGUFs, shared by the tests -----------------------

TINY_MLX_ARGS = dict(model_type="llama", hidden_size=32, num_hidden_layers=2,
                     intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
                     rms_norm_eps=1e-5, vocab_size=50)


def tiny_mlx_llama(seed: int = 0, **overrides):
    """A tiny random mlx-lm llama (vocabulary 50 unless overridden), in eval mode."""
    import mlx.core as mx
    from mlx_lm.models import llama

    mx.random.seed(seed)
    model = llama.Model(llama.ModelArgs(**{**TINY_MLX_ARGS, **overrides}))
    model.eval()
    return model


def write_unsupported_gguf(path: Path, architecture: str = "gemma3") -> Path:
    """A minimal GGUF of an architecture pocketsleep does not support."""
    import gguf

    w = gguf.GGUFWriter(str(path), architecture)
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
