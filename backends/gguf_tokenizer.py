"""Rebuild a Hugging Face `tokenizer.json` from the vocabulary inside a GGUF file.

A GGUF carries its tokenizer as metadata: the token strings, their types (normal,
control, user-defined, ...), the BPE merges, the special token ids, a pre-tokenizer
name (`tokenizer.ggml.pre`) and usually the chat template. llama.cpp turns the
pre-tokenizer name into a list of split regexes (src/llama-vocab.cpp); we turn the
same regexes into a `tokenizers` pipeline, so MLX sees the same token ids llama.cpp
does. Only GPT-2 style byte-level BPE (`tokenizer.ggml.model == "gpt2"`: SmolLM,
Llama 3, Qwen2, ...) is rebuilt; SentencePiece vocabularies are refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pocketsleep.errors import InputError

# llama.cpp token types (gguf.TokenType).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
           r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = _LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")

# (split regexes applied in turn, ignore_merges, add_bos when the file does not say)
# as llama.cpp sets them per `tokenizer.ggml.pre` (src/llama-vocab.cpp).
_PRE_FAMILIES = [
    (("llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"), [_LLAMA3], True, True),
    (("dbrx", "smaug-bpe", "chatglm-bpe", "glm4"), [_LLAMA3], False, False),
    (("qwen2", "deepseek-r1-qwen", "megrez", "stablelm2"), [_QWEN2], False, False),
    (("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"),
     [r"\p{N}", _GPT2], False, False),
    (("gpt-2", "phi-2", "mpt", "olmo", "jais", "exaone4"), [_GPT2], False, False),
    (("falcon",), [r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, "[0-9][0-9][0-9]"], False, False),
    (("default",), [r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", "[0-9][0-9][0-9]"], False, False),
]
PRE_TOKENIZERS = {name: fam[1:] for fam in _PRE_FAMILIES for name in fam[0]}

# Control tokens llama.cpp also treats as end of generation (by their text).
_EOG_TEXTS = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
              "<|eom_id|>", "<EOT>", "<|end_of_text|>", "<end_of_utterance>"}


@dataclass
class TokenizerFiles:
    """What mlx-lm / transformers read from a model folder, built in memory."""

    tokenizer_json: str
    tokenizer_config: dict
    special_tokens_map: dict
    eos_token_ids: list[int]
    bos_token_id: int | None

    def write(self, folder: Path) -> None:
        (folder / "tokenizer.json").write_text(self.tokenizer_json, encoding="utf-8")
        for name, obj in (("tokenizer_config.json", self.tokenizer_config),
                          ("special_tokens_map.json", self.special_tokens_map)):
            (folder / name).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")


def check_tokenizer(header) -> None:
    """Raise InputError unless this GGUF's tokenizer can be rebuilt."""
    model = header.get("tokenizer.ggml.model")
    path = header.path
    if model is None or "tokenizer.ggml.tokens" not in header.metadata:
        raise InputError(f"{path}: the GGUF has no tokenizer inside; use a GGUF that "
                         "embeds its vocabulary (any llama.cpp conversion does)")
    if model != "gpt2":
        raise InputError(
            f"{path}: tokenizer type '{model}' is not supported (supported: gpt2 byte-level "
            "BPE, as in SmolLM, Llama 3 and Qwen2); convert the original model with "
            "mlx_lm.convert and pass that folder"
        )
    pre = header.get("tokenizer.ggml.pre") or "default"
    if pre not in PRE_TOKENIZERS:
        raise InputError(
            f"{path}: pre-tokenizer '{pre}' is not supported (supported: "
            f"{', '.join(sorted(PRE_TOKENIZERS))}); convert the original model with "
            "mlx_lm.convert and pass that folder"
        )


def _token_id(header, key: str, n_vocab: int) -> int | None:
    value = header.get(f"tokenizer.ggml.{key}")
    if value is None:
        return None
    value = int(value)
    return value if 0 <= value < n_vocab else None


def build_tokenizer(header) -> TokenizerFiles:
    """Rebuild the tokenizer of a checked GGUF header (see `check_tokenizer`)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers import processors

    check_tokenizer(header)
    tokens: list[str] = header.get("tokenizer.ggml.tokens")
    n_vocab = len(tokens)
    types = header.get("tokenizer.ggml.token_type")
    types = [NORMAL] * n_vocab if types is None else [int(t) for t in types]
    merges_raw: list[str] = header.get("tokenizer.ggml.merges") or []
    regexes, ignore_merges, default_add_bos = PRE_TOKENIZERS[header.get("tokenizer.ggml.pre") or "default"]

    vocab: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        vocab.setdefault(tok, i)
    merges = []
    for m in merges_raw:
        a, sep, b = m.partition(" ")
        # Skip a malformed merge rather than fail: llama.cpp would never apply it.
        if sep and a in vocab and b in vocab and (a + b) in vocab:
            merges.append((a, b))

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=ignore_merges,
                               fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in regexes]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()

    # llama.cpp splits control / unknown tokens out of the text when asked to parse
    # specials, and user-defined tokens always: exactly HF's special / plain added tokens.
    special, plain = [], []
    for i, (text, ttype) in enumerate(zip(tokens, types)):
        if not text or vocab.get(text) != i:
            continue
        if ttype in (CONTROL, UNKNOWN):
            special.append(AddedToken(text, special=True, normalized=False))
        elif ttype == USER_DEFINED:
            plain.append(AddedToken(text, special=False, normalized=False))
    tok.add_special_tokens(special)
    tok.add_tokens(plain)

    bos = _token_id(header, "bos_token_id", n_vocab)
    eos = _token_id(header, "eos_token_id", n_vocab)
    unk = _token_id(header, "unknown_token_id", n_vocab)
    pad = _token_id(header, "padding_token_id", n_vocab)
    add_bos = bool(header.get("tokenizer.ggml.add_bos_token", default_add_bos)) and bos is not None
    add_eos = bool(header.get("tokenizer.ggml.add_eos_token", False)) and eos is not None
    if add_bos or add_eos:
        # "<bos> $A <eos>", as HF's Llama tokenizers do it.
        single = ([tokens[bos]] if add_bos else []) + ["$A"] + ([tokens[eos]] if add_eos else [])
        tok.post_processor = processors.TemplateProcessing(
            single=single,
            pair=single + [s if s != "$A" else "$B" for s in single],
            special_tokens=[(tokens[i], i) for i in ([bos] if add_bos else []) + ([eos] if add_eos else [])],
        )

    # End-of-generation ids: eos, eot, eom, and the control tokens llama.cpp also
    # stops at by their text (<|im_end|>, <|eot_id|>, <|endoftext|>, ...).
    eog = [eos, _token_id(header, "eot_token_id", n_vocab), _token_id(header, "eom_token_id", n_vocab)]
    eog += [i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == CONTROL and t in _EOG_TEXTS]
    eos_ids = list(dict.fromkeys(i for i in eog if i is not None))

    specials = {key: tokens[i] for key, i in (("bos_token", bos), ("eos_token", eos),
                                              ("unk_token", unk), ("pad_token", pad)) if i is not None}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **specials,
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(header.arch_get("context_length", 0) or 0) or 1 << 30,
    }
    template = header.get("tokenizer.chat_template")
    if isinstance(template, str) and template.strip():
        config["chat_template"] = template
    return TokenizerFiles(tok.to_str(), config, specials, eos_ids, bos)
