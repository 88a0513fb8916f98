"""Export the personal model — a base model with experts fused in — as a GGUF file
that llama.cpp (llama-cli, llama-server, llama-cpp-python, ...) loads and chats with.

`export_gguf(model, out, quant, experts)`:
1. opens the base (a .gguf file or an MLX / Hugging Face folder of the llama or
   qwen2 family) as a `gguf_source.ModelSource`: GGUF names and layout, metadata
   with the tokenizer and chat template;
2. reads and checks every expert against it before writing anything;
3. streams the tensors one at a time: dequantised to float32, each expert's update
   scale·(A B)ᵀ added in float32, then encoded — F32, F16 or Q8_0 for matrices
   (gguf-py's reference quantiser), F32 for norms, biases and other 1-D tensors, as
   llama.cpp's converter does;
4. writes through `gguf_write.write_gguf`: space checked first, a temporary file in
   the target folder, fsync, rename.

mlx-lm's own `fuse --export-gguf` is not used: llama.cpp refuses its files
(DESIGN.md §4). No torch is needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pocketsleep.errors import InputError

from .gguf_lora import read_expert
from .gguf_source import ROPE_FREQS, ModelSource, open_source
from .gguf_write import PlannedTensor, write_gguf

# --quant value -> (ggml type of the matrices, general.file_type: gguf.LlamaFileType)
QUANTS = {"f32": ("F32", 0), "f16": ("F16", 1), "q8_0": ("Q8_0", 7)}


@dataclass(frozen=True)
class ExportResult:
    path: Path
    size: int
    quant: str
    experts: int
    tensors: int
    seconds: float


def export_gguf(
    model: Path | ModelSource,
    out: Path,
    quant: str = "f16",
    experts: Sequence[Path] = (),
    *,
    overwrite: bool = False,
) -> ExportResult:
    """Write `model` with `experts` fused in as a GGUF file at `out`."""
    started = time.perf_counter()
    if quant not in QUANTS:
        raise InputError(f"quantisation '{quant}' is not supported; use one of {', '.join(QUANTS)}")
    _require()
    source = model if isinstance(model, ModelSource) else open_source(model)
    loaded = [read_expert(path, source) for path in experts]
    updates: dict[str, list] = {}
    for expert in loaded:
        for name in expert.pairs:
            updates.setdefault(name, []).append(expert)

    qtype, file_type = QUANTS[quant]
    plan = [PlannedTensor(name, tuple(shape), tensor_type(name, shape, qtype))
            for name, shape in source.shapes.items()]
    import gguf

    metadata = dict(source.metadata())
    metadata["general.file_type"] = file_type
    metadata["general.quantization_version"] = gguf.GGML_QUANT_VERSION
    if loaded:
        metadata["pocketsleep.experts"] = [str(e.path.name) for e in loaded]

    def produce():
        for name, w in source.tensors():
            for expert in updates.get(name, ()):
                w = w + expert.delta(name)  # float32, before any quantisation
            yield w

    size = write_gguf(Path(out), source.arch, metadata, plan, produce, overwrite=overwrite)
    return ExportResult(Path(out), size, quant, len(loaded), len(plan),
                        time.perf_counter() - started)


def tensor_type(name: str, shape: Sequence[int], qtype: str) -> str:
    """The ggml type a tensor is written as: 1-D tensors stay F32; Q8_0 needs rows that
    are whole blocks of 32 (others fall back to F16, as in llama.cpp's converter)."""
    if len(shape) < 2 or name == ROPE_FREQS:
        return "F32"
    if qtype == "Q8_0" and shape[-1] % 32:
        return "F16"
    return qtype


def _require() -> None:
    from pocketsleep.errors import require

    for module in ("gguf", "mlx.core", "tokenizers"):
        require(module, "mlx", "Exporting to GGUF")
