"""The llama.cpp engine (llama-cpp-python): GGUF models, inference only.

On CPU-only machines it answers much faster than MLX, so chat uses it there with a
GGUF of the personal model. Chat formatting is llama-cpp-python's own (the chat
template inside the GGUF); experts are GGUF LoRA adapters (`adapter.gguf` in an
expert folder, written by `pocketsleep export`).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from pocketsleep import control_tokens
from pocketsleep.errors import InputError, require
from pocketsleep.models import ResolvedModel, check_fits_in_memory

from .base import Engine, GenerationOptions

GGUF_ADAPTER = "adapter.gguf"
DEFAULT_CONTEXT = 4096


def _threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class EndAfter:
    """A logits processor that forces the end token once `limit` tokens are sampled.

    Fix: llama-cpp-python checks max_tokens only after a token that completes a UTF-8
    character, so a model emitting broken bytes ran on until the context was full
    (99 s, then "llama_decode returned 1", on a tiny model asked for 4 tokens). The
    processor runs at every sampling step, whatever the text looks like."""

    def __init__(self, limit: int | None, eos: int):
        self.limit, self.eos, self.sampled = limit, eos, 0

    def __call__(self, input_ids, scores):
        self.sampled += 1
        if self.limit is not None and self.limit > 0 and self.sampled > self.limit:
            forced = np.full_like(scores, -np.inf)
            forced[self.eos] = 0.0
            return forced
        return scores


class LlamaCppEngine(Engine):
    name = "llamacpp"

    def __init__(self, gguf: Path, model_label: str, n_ctx: int = DEFAULT_CONTEXT):
        super().__init__(model_label)
        self._lib = require("llama_cpp", "llamacpp", "the llama.cpp engine")
        self.gguf = Path(gguf)
        check_fits_in_memory(int(self.gguf.stat().st_size * 1.2), f"the model {gguf}",
                             "use a smaller or more quantised GGUF")
        # llama.cpp prints loader chatter to stderr from C; keep the terminal clean.
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                self.llm = self._lib.Llama(
                    model_path=str(gguf), n_ctx=n_ctx, n_threads=_threads(), verbose=False
                )
            except ValueError as e:
                raise InputError(
                    f"llama.cpp cannot load {gguf} ({e}); the file may be damaged or of "
                    "an architecture this llama.cpp does not know"
                ) from None
        # Use the GGUF's own chat template, as the MLX engine does; llama-cpp-python
        # otherwise may guess a built-in format (e.g. chatml) that differs from it.
        if "tokenizer.chat_template" in self.llm.metadata:
            self.llm.chat_format = "chat_template.default"
        self.controls = self._control_texts()
        self._adapters: list = []
        self._scales: list[float] = []

    @classmethod
    def load(cls, resolved: ResolvedModel) -> "LlamaCppEngine":
        if resolved.format != "gguf":
            raise InputError(
                f"the llama.cpp engine needs a GGUF file, and {resolved.path} is an MLX "
                "folder; use --engine mlx"
            )
        return cls(resolved.path, resolved.name)

    # -- generation ---------------------------------------------------------------

    def stream_chat(
        self, messages: list[dict], options: GenerationOptions = GenerationOptions()
    ) -> Iterator[str]:
        # Evaluate the whole prompt afresh every time. Reusing a cached prefix makes
        # llama.cpp compute the last prompt token alone, whose logits differ slightly
        # from the batched ones; on a small quantised model that flips greedy answers,
        # and closed-book probes must not depend on what was asked before.
        self.llm.reset()
        chunks = self.llm.create_chat_completion(
            # Control-token text in a message is the message's text: llama-cpp-python
            # renders the template to text and tokenizes it with specials parsed.
            messages=control_tokens.plain_messages(messages, self.controls),
            stream=True,
            temperature=options.temperature,
            top_p=options.top_p,
            max_tokens=options.max_tokens,
            seed=options.seed,
            logits_processor=[EndAfter(options.max_tokens, self.llm.token_eos())],
        )
        try:
            for chunk in chunks:
                text = chunk["choices"][0]["delta"].get("content")
                if text:
                    yield text
        except ValueError as e:
            if "context window" not in str(e):
                raise
            # Fix: a prompt longer than the context (a pasted 1 MB message) was a
            # traceback in `ask`.
            raise InputError(f"too long for the model's context: {e}; shorten the "
                             "message (or start a new conversation)") from None
        finally:
            chunks.close()

    def prompt_text(self, messages: list[dict]) -> str:
        """The chat prompt exactly as create_chat_completion renders it."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise InputError(f"{self.gguf} has no chat template")
        # bos/eos text exactly as llama-cpp-python fills them in for its own formatter.
        bos_id, eos_id = self.llm.token_bos(), self.llm.token_eos()
        bos = self.llm._model.token_get_text(bos_id) if bos_id != -1 else ""
        eos = self.llm._model.token_get_text(eos_id) if eos_id != -1 else ""
        messages = control_tokens.plain_messages(messages, self.controls)
        return Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)(messages=messages).prompt

    def _control_texts(self) -> frozenset[str]:
        # The tokens llama.cpp splits out of text when it parses specials.
        flags = self._lib.LLAMA_TOKEN_ATTR_CONTROL | self._lib.LLAMA_TOKEN_ATTR_UNKNOWN
        model = self.llm._model
        return frozenset(model.token_get_text(i) for i in range(self.llm.n_vocab())
                         if model.token_get_attr(i) & flags)

    def _text_tokens(self, text: str) -> list[int]:
        # As the MLX engine tokenizes text: the same ids for the same text.
        return self.llm.tokenize(control_tokens.plain(text, self.controls).encode("utf-8"),
                                 add_bos=False, special=False)

    def count_tokens(self, text: str) -> int:
        return len(self._text_tokens(text))

    def score(self, messages: list[dict], answer: str) -> list[float]:
        prompt = self.llm.tokenize(self.prompt_text(messages).encode("utf-8"),
                                   add_bos=False, special=True)
        answer_ids = self._text_tokens(answer)
        n_vocab = self.llm.n_vocab()
        self.llm.reset()
        self.llm.eval(prompt)
        out = []
        # One token at a time, reading the last position's logits: no n_ctx × vocab
        # buffer (logits_all) needed.
        for token in answer_ids:
            logits = np.ctypeslib.as_array(
                self._lib.llama_get_logits_ith(self.llm.ctx, -1), shape=(n_vocab,)
            ).astype(np.float64)
            top = logits.max()
            out.append(float(logits[token] - top - np.log(np.exp(logits - top).sum())))
            self.llm.eval([token])
        self.llm.reset()
        return out

    # -- experts ------------------------------------------------------------------

    def attach_expert(self, path: Path, scale: float = 1.0) -> None:
        adapter_file = Path(path) / GGUF_ADAPTER
        if not adapter_file.is_file():
            raise InputError(
                f"expert {path} has no {GGUF_ADAPTER} for llama.cpp; "
                "use --engine mlx or export the expert with `pocketsleep export --lora`"
            )
        adapter = self._lib.llama_adapter_lora_init(self.llm.model, str(adapter_file).encode())
        if not adapter:
            raise InputError(f"llama.cpp cannot load the adapter {adapter_file}")
        self._adapters.append(adapter)
        self._scales.append(scale)
        self._apply_adapters()

    def detach_experts(self) -> None:
        adapters = self._adapters
        self._adapters, self._scales = [], []
        self._apply_adapters()
        for adapter in adapters:
            self._lib.llama_adapter_lora_free(adapter)

    def _apply_adapters(self) -> None:
        n = len(self._adapters)
        array = (self._lib.llama_adapter_lora_p_ctypes * n)(*self._adapters) if n else None
        scales = (ctypes.c_float * n)(*self._scales) if n else None
        if self._lib.llama_set_adapters_lora(self.llm.ctx, array, n, scales):
            raise InputError("llama.cpp refused the attached experts")
        self.llm.reset()  # cached prompt state was computed without them

    def close(self) -> None:
        if getattr(self, "llm", None) is not None:
            self.detach_experts()
            self.llm.close()
            self.llm = None
