"""Turn a GGUF file (llama.cpp's format) into an MLX model.

pocketsleep trains LoRA experts with MLX, but its default model, and many models
people already have, come as GGUF. This module converts one into what mlx-lm loads:

- `convert_gguf(gguf, out_dir)` writes an mlx-lm model folder (config.json,
  model.safetensors, tokenizer.json, tokenizer_config.json with the chat template),
  atomically: a crash never leaves a half-written folder;
- `load_gguf(gguf)` builds the same model and tokenizer in memory, writing nothing;
- `gguf_info(gguf)` reads only the header (fast) and describes the model.

How: `gguf_file.read_header` checks the file; `mlx.core.load` reads the tensors
(Q4_0 / Q4_1 / Q8_0 come back packed as MLX affine quantisation, weight + scales +
biases with group size 32, which `mx.dequantize` expands; F16 / F32 come back as
they are); files with k-quants, Q5_x, IQ4_x or BF16 are expanded by gguf-py's
reference dequantiser instead (`gguf_weights`); llama.cpp's q/k row permutation is
undone for the llama family; the tensors are renamed to Hugging Face names and
handed to mlx-lm's own `llama` / `qwen2` models. The tokenizer is rebuilt by
`gguf_tokenizer`.
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from pocketsleep.errors import InputError, require
from pocketsleep.faults import checkpoint
from pocketsleep.files import fsync_tree, left_by_dead_writer, temp_prefix

from .gguf_file import GGUFHeader, read_header
from .gguf_tokenizer import TokenizerFiles, build_tokenizer, check_tokenizer
from .gguf_weights import SUPPORTED_TYPES, convert_weights, file_type_name, head_dim

SUPPORTED_ARCHITECTURES = ("llama", "qwen2")
DTYPES = ("float32", "float16", "bfloat16")
# Marks a folder written by convert_gguf, so that converting again may replace it.
SOURCE_KEY = "pocketsleep_gguf_source"


# ---------------------------------------------------------------- public API


def gguf_info(gguf_path: Path) -> dict:
    """Describe the model in a GGUF file from its header alone (no tensors read).

    Raises InputError only for a missing, foreign, truncated or corrupt file; an
    unsupported model is described with `supported: False` and a `problem` line.
    """
    header = read_header(gguf_path)
    arch = header.get("general.architecture")
    tokens = header.get("tokenizer.ggml.tokens") or []
    embd = header.tensors.get("token_embd.weight")
    hidden = header.arch_get("embedding_length")
    heads = header.arch_get("attention.head_count")
    types: dict[str, int] = {}
    for t in header.tensors.values():
        types[t.type_name] = types.get(t.type_name, 0) + 1
    try:
        _check_supported(header)
        problem = None
    except InputError as e:
        problem = str(e)
    return {
        "path": str(Path(gguf_path)),
        "name": header.get("general.name"),
        "architecture": arch,
        "n_layers": _int(header.arch_get("block_count")),
        "hidden": _int(hidden),
        "heads": _int(heads),
        "kv_heads": _int(header.arch_get("attention.head_count_kv", heads)),
        "head_dim": _int(header.arch_get("attention.key_length"))
        or (int(hidden) // int(heads) if hidden and heads else None),
        "intermediate": _int(header.arch_get("feed_forward_length")),
        "vocab": len(tokens) or (embd.shape[0] if embd else None),
        "context_length": _int(header.arch_get("context_length")),
        "rope_theta": _float(header.arch_get("rope.freq_base")),
        "chat_template": bool(header.get("tokenizer.chat_template")),
        "file_type": file_type_name(header.get("general.file_type")),
        "tensor_types": types,
        "n_params": sum(math.prod(t.shape) for t in header.tensors.values()),
        "file_size": header.file_size,
        "tokenizer": header.get("tokenizer.ggml.model"),
        "tokenizer_pre": header.get("tokenizer.ggml.pre"),
        "supported": problem is None,
        "problem": problem,
    }


def convert_gguf(gguf_path: Path, out_dir: Path, dtype: str = "float32") -> Path:
    """Write an mlx-lm model folder converted from a GGUF of the llama or qwen2 family.

    Weights are dequantised to `dtype` ("float32", "float16" or "bfloat16"). The
    folder is assembled in a temporary sibling and renamed into place, so `out_dir`
    is either absent, the old folder, or complete. An existing `out_dir` is replaced
    only if it is empty or was itself written by convert_gguf. Returns `out_dir`.
    """
    mx = _require_mlx("Converting a GGUF model")
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    header = read_header(gguf_path)
    _check_supported(header)
    _check_dtype(dtype)
    _check_out_dir(out_dir)
    weights, config = _convert(header, dtype)
    tokenizer = build_tokenizer(header)
    config.update(_token_config(tokenizer))

    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _sweep_stale_temps(out_dir)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out_dir.name), suffix=".tmp", dir=parent))
    except OSError as e:
        raise InputError(f"{out_dir}: cannot create the output folder ({e.strerror or e}); "
                         "choose a folder you can write to") from None
    try:
        mx.save_safetensors(str(tmp / "model.safetensors"), weights, metadata={"format": "mlx"})
        del weights
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        tokenizer.write(tmp)
        fsync_tree(tmp)
        checkpoint("convert.written")
        _check_out_dir(out_dir)  # again: it may have changed during the conversion
        if out_dir.exists() and any(out_dir.iterdir()):
            # Swap: the old folder moves aside (rename onto an empty folder is atomic),
            # the new one takes its place, then the old one is deleted.
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(out_dir.name), suffix=".old",
                                        dir=parent))
            os.rename(out_dir, old)
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if out_dir.exists():
                out_dir.rmdir()
            os.rename(tmp, out_dir)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise InputError(f"{out_dir}: cannot write the converted model ({e.strerror or e}); "
                             "check the free space and permissions there") from None
        raise
    return out_dir


def load_gguf(gguf_path: Path, dtype: str = "float32"):
    """Build the mlx-lm model and TokenizerWrapper of a GGUF in memory.

    The result behaves as `mlx_lm.load(convert_gguf(gguf_path, folder))` would,
    without writing the weights anywhere.
    """
    import importlib

    mx = _require_mlx("Loading a GGUF model with MLX")
    from mlx_lm.utils import load_tokenizer

    header = read_header(gguf_path)
    _check_supported(header)
    _check_dtype(dtype)
    weights, config = _convert(header, dtype)
    tokenizer_files = build_tokenizer(header)
    config.update(_token_config(tokenizer_files))

    arch = importlib.import_module(f"mlx_lm.models.{config['model_type']}")
    model = arch.Model(arch.ModelArgs.from_dict(config))
    model.load_weights(list(model.sanitize(weights).items()), strict=True)
    model.eval()
    mx.eval(model.parameters())
    # The tokenizer goes through mlx-lm's own loader (detokenizer choice, chat
    # template, eos ids) from a small temporary folder: the same path a converted
    # folder takes.
    with tempfile.TemporaryDirectory(prefix="pocketsleep-tok-") as tmp:
        tokenizer_files.write(Path(tmp))
        small = {k: config[k] for k in ("model_type", "architectures", "bos_token_id", "eos_token_id")}
        (Path(tmp) / "config.json").write_text(json.dumps(small), encoding="utf-8")
        tokenizer = load_tokenizer(Path(tmp), eos_token_ids=config["eos_token_id"])
    return model, tokenizer


# ---------------------------------------------------------------- checks


def _require_mlx(what: str):
    """mlx.core, after checking that every package the conversion needs is there."""
    for module in ("mlx_lm", "tokenizers", "gguf"):
        require(module, "mlx", what)
    return require("mlx.core", "mlx", what)


def _check_supported(header: GGUFHeader) -> None:
    path = header.path
    arch = header.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise InputError(
            f"{path}: architecture '{arch}' is not supported (supported: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}); convert it to an MLX folder with "
            "mlx_lm.convert and pass that folder"
        )
    if int(header.get("split.count", 1) or 1) > 1:
        raise InputError(f"{path}: is one part of a split GGUF; merge the parts first with "
                         "llama-gguf-split --merge and pass the merged file")
    if (header.arch_get("expert_count") or 0) > 0:
        raise InputError(f"{path}: mixture-of-experts models are not supported; convert it "
                         "to an MLX folder with mlx_lm.convert and pass that folder")
    for info in header.tensors.values():
        if info.type_name not in SUPPORTED_TYPES:
            raise InputError(
                f"{path}: tensor '{info.name}' has type {info.type_name}, which cannot be "
                f"converted (supported: {', '.join(SUPPORTED_TYPES)}); use a Q8_0, Q4_K_M "
                "or F16 GGUF of this model, or an MLX folder"
            )
    for key in ("block_count", "embedding_length", "attention.head_count", "feed_forward_length"):
        if header.arch_get(key) is None:
            raise InputError(f"{path}: metadata '{arch}.{key}' is missing; the GGUF is "
                             "incomplete, re-convert it with a current llama.cpp")
    if "token_embd.weight" not in header.tensors:
        raise InputError(f"{path}: tensor 'token_embd.weight' is missing; the GGUF is incomplete")
    dim = head_dim(header)
    rope_dims = header.arch_get("rope.dimension_count", dim)
    if int(rope_dims) != dim:
        raise InputError(f"{path}: partial rotary embeddings ({rope_dims} of {dim} "
                         "dimensions) are not supported; use an MLX folder of this model")
    scaling = header.arch_get("rope.scaling.type", "none")
    if scaling not in ("none", "linear"):
        raise InputError(f"{path}: rope scaling '{scaling}' is not supported (supported: "
                         "none, linear); use an MLX folder of this model")
    check_tokenizer(header)


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise InputError(f"dtype '{dtype}' is not supported; use one of {', '.join(DTYPES)}")


def _check_out_dir(out_dir: Path) -> None:
    """Refuse an out_dir that is a file, or a non-empty folder not written by us."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder; choose another output folder")
    if not any(out_dir.iterdir()):
        return
    try:
        ours = SOURCE_KEY in json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise InputError(f"{out_dir}: folder exists and is not empty; choose a new output "
                         "folder or remove that one")


def _sweep_stale_temps(out_dir: Path, max_age_s: float = 6 * 3600) -> None:
    """Delete temporary siblings that an earlier, killed conversion left behind."""
    import time

    now = time.time()
    for p in out_dir.parent.glob(f".{glob.escape(out_dir.name)}.*"):
        try:
            # Fix: only old ones were swept, so a conversion killed midway left a whole
            # model's worth of temporary weights for good (the conversion that follows
            # is seconds later, and later runs find the cache and convert nothing).
            if p.is_dir() and p.suffix in (".tmp", ".old") and (
                    left_by_dead_writer(p, out_dir.name) or now - p.stat().st_mtime > max_age_s):
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def _convert(header: GGUFHeader, dtype: str) -> tuple[dict, dict]:
    weights, config = convert_weights(header, dtype)
    config[SOURCE_KEY] = {
        "file": Path(header.path).name,
        "size": header.file_size,
        "file_type": file_type_name(header.get("general.file_type")),
        "name": header.get("general.name"),
    }
    return weights, config


def _token_config(tokenizer: TokenizerFiles) -> dict:
    eos = tokenizer.eos_token_ids
    return {"bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": eos[0] if len(eos) == 1 else eos}


def _int(v):
    return int(v) if v is not None else None


def _float(v):
    return float(v) if v is not None else None
