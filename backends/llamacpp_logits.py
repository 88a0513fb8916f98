"""Raw logits from llama.cpp for given token ids: the judge of a GGUF file's numbers.

The chat engine (llamacpp_engine.py) streams text; checking a GGUF against another
model needs the logits at every position instead. The KV cache is kept in float32
here: llama.cpp's default f16 cache alone moves logits by about 1e-3, which would
blur what is being measured (the file's weights).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Sequence

import numpy as np

from pocketsleep.errors import InputError, require

from .llamacpp_engine import _threads as threads


def sequence_logits(gguf: Path, sequences: Sequence[Sequence[int]],
                    start: Sequence[int]) -> list[np.ndarray]:
    """For each token sequence, llama.cpp's logits at positions `start[i]` onwards
    ([len - start, vocab], float32). One model load for all sequences."""
    lib = require("llama_cpp", "llamacpp", "checking a GGUF with llama.cpp")
    n_ctx = max(len(s) for s in sequences) + 8
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            llm = lib.Llama(str(gguf), n_ctx=n_ctx, logits_all=True, verbose=False,
                            n_threads=threads(), type_k=lib.GGML_TYPE_F32,
                            type_v=lib.GGML_TYPE_F32)
        except ValueError as e:
            raise InputError(f"llama.cpp cannot load {gguf} ({e})") from None
    try:
        out = []
        for ids, first in zip(sequences, start):
            llm.reset()
            llm.eval(list(ids))
            out.append(np.array(llm.scores[first:len(ids)], dtype=np.float32))
        return out
    finally:
        llm.close()
