"""A Hugging Face `tokenizer.json` as GGUF vocabulary metadata (`tokenizer.ggml.*`).

Part of the GGUF export of an MLX / Hugging Face folder; the inverse of
gguf_tokenizer.py, which rebuilds a tokenizer.json from a GGUF. Tokens, token types
(special added tokens are control tokens, other added tokens user-defined, holes
up to the embedding size unused pads), merges, special ids, add_bos and the chat
template are read directly. The pre-tokenizer name llama.cpp needs
(`tokenizer.ggml.pre`: which split regexes it applies) cannot be read from the
file reliably, so it is found by behaviour, as llama.cpp's own converter does with
its hash of a test text: each candidate is rebuilt with gguf_tokenizer and the
first that splits a set of probe texts exactly as the folder's tokenizer does wins.
Only byte-level BPE vocabularies (SmolLM, Llama 3, Qwen2, ...) are supported.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pocketsleep.errors import InputError

from .gguf_file import GGUFHeader
from .gguf_tokenizer import CONTROL, NORMAL, UNUSED, USER_DEFINED, build_tokenizer

# One llama.cpp pre-tokenizer name per family of split rules (gguf_tokenizer.PRE_TOKENIZERS).
CANDIDATES = ("llama-bpe", "qwen2", "smollm", "gpt-2", "dbrx", "falcon", "default")
# Texts that tell the families apart: digit grouping, contractions, punctuation runs,
# whitespace and newlines, non-Latin scripts, emoji, code, special tokens.
PROBES = (
    "Hello world", "0123456789", "12345 1,000,000 3.14159 2024-05-01", "it's I'LL we've they'd",
    "x=1+2; y<=3 && z>=4 || !w", "a  b   c    d\n\n\n e\r\n\tf", "   leading and trailing   ",
    "emoji 😀🎉👍🏽 and 🇵🇹", "中文字符测试，日本語のテキスト、한국어", "Café déjà vu, naïve Ångström, ß",
    "def f(x):\n    return x  # comment\n", "<|im_start|>user\nHi!<|im_end|>\n", "...!!!???$$$ ^^~~||``",
    "The year 1999 had 365 days.", "ABC123def456", "\n\n\n\n", " \t \n",
)


def tokenizer_metadata(folder: Path, n_vocab: int, n_ctx: int = 0) -> dict:
    """`tokenizer.*` GGUF keys for the tokenizer in `folder`, padded to `n_vocab` tokens."""
    from tokenizers import Tokenizer

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise InputError(f"{folder}: has no tokenizer.json, so its tokenizer cannot be written "
                         "to GGUF; add the model's tokenizer.json to the folder")
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text)
        source = Tokenizer.from_str(text)
    except Exception as e:  # OSError, ValueError, or the plain Exception tokenizers raises
        raise InputError(f"{path}: cannot be read ({str(e)[:160]}); the folder is damaged") from None
    model = raw.get("model") or {}
    if model.get("type") != "BPE" or "ByteLevel" not in json.dumps(raw.get("decoder")):
        raise InputError(f"{path}: this tokenizer ({model.get('type')}) cannot be exported to "
                         "GGUF (supported: byte-level BPE, as in SmolLM, Llama 3 and Qwen2)")

    vocab = source.get_vocab(with_added_tokens=True)
    if max(vocab.values()) >= n_vocab:
        raise InputError(f"{path}: has {max(vocab.values()) + 1} tokens but the model's embedding "
                         f"only {n_vocab} rows; the tokenizer belongs to another model")
    tokens: list[str | None] = [None] * n_vocab
    for tok, i in vocab.items():
        tokens[i] = tok
    types = [NORMAL] * n_vocab
    for added in raw.get("added_tokens") or []:
        types[added["id"]] = CONTROL if added.get("special") else USER_DEFINED
    for i, tok in enumerate(tokens):
        if tok is None:
            tokens[i], types[i] = f"[PAD{i}]", UNUSED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]

    tok_config = _json(folder / "tokenizer_config.json")
    ids = {key: _special_id(key, vocab, n_vocab, tok_config, _json(folder / "special_tokens_map.json"),
                            _json(folder / "config.json"))
           for key in ("bos", "eos", "unk", "pad")}
    with_specials = source.encode("hello", add_special_tokens=True).ids
    plain = source.encode("hello", add_special_tokens=False).ids
    add_bos = tok_config.get("add_bos_token")
    if not isinstance(add_bos, bool):
        add_bos = len(with_specials) > len(plain) and with_specials[0] == ids["bos"]
    add_eos = tok_config.get("add_eos_token")
    if not isinstance(add_eos, bool):
        add_eos = len(with_specials) > len(plain) and with_specials[-1] == ids["eos"]

    meta = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": np.array(types, np.int32),
        "tokenizer.ggml.merges": merges,
    }
    for key, gguf_key in (("bos", "bos_token_id"), ("eos", "eos_token_id"),
                          ("unk", "unknown_token_id"), ("pad", "padding_token_id")):
        if ids[key] is not None:
            meta[f"tokenizer.ggml.{gguf_key}"] = ids[key]
    meta["tokenizer.ggml.add_bos_token"] = bool(add_bos and ids["bos"] is not None)
    meta["tokenizer.ggml.add_eos_token"] = bool(add_eos and ids["eos"] is not None)
    if not merges:
        meta.pop("tokenizer.ggml.merges")
    meta["tokenizer.ggml.pre"] = _pre_tokenizer(path, raw, source, meta, n_ctx)
    template = chat_template(folder, tok_config)
    if template:
        meta["tokenizer.chat_template"] = template
    return meta


def chat_template(folder: Path, tok_config: dict) -> str | None:
    template = tok_config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if not template and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if not template:
        template = _json(folder / "chat_template.json").get("chat_template")
    return template if isinstance(template, str) and template.strip() else None


def _pre_tokenizer(path: Path, raw: dict, source, meta: dict, n_ctx: int) -> str:
    from tokenizers import Tokenizer

    expected = [source.encode(t, add_special_tokens=False).ids for t in PROBES]
    for pre in _ordered_candidates(raw):
        header = GGUFHeader(path=path, version=3, metadata={
            **meta, "tokenizer.ggml.pre": pre, "general.architecture": "llama",
            "llama.context_length": n_ctx})
        rebuilt = Tokenizer.from_str(build_tokenizer(header).tokenizer_json)
        if all(rebuilt.encode(t, add_special_tokens=False).ids == ids
               for t, ids in zip(PROBES, expected)):
            return pre
    raise InputError(f"{path}: this tokenizer splits text in a way llama.cpp has no "
                     f"pre-tokenizer for (tried {', '.join(CANDIDATES)}); it cannot be "
                     "exported to GGUF")


def _ordered_candidates(raw: dict) -> list[str]:
    """CANDIDATES, the likeliest first (a guess from the split rules' text)."""
    text = json.dumps(raw.get("pre_tokenizer"))
    if "{1,3}" in text:
        first = "llama-bpe"
    elif "Digits" in text:
        first = "smollm"
    elif "\\\\p{N}" in text:
        first = "qwen2"
    else:
        first = "gpt-2"
    return [first] + [c for c in CANDIDATES if c != first]


def _special_id(key: str, vocab: dict, n_vocab: int, *sources: dict) -> int | None:
    tok_config, special_map, config = sources
    for src in (tok_config, special_map):
        value = src.get(f"{key}_token")
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value in vocab:
            return vocab[value]
    value = config.get(f"{key}_token_id")
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, int) and 0 <= value < n_vocab else None


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
