"""The MLX engine: Metal on Apple silicon, CUDA on Linux GPUs, CPU otherwise.

Generation, scoring and LoRA are mlx-lm's own (`stream_generate`, samplers, the model
classes); this file only adapts them to the Engine interface and attaches experts.
GGUF models (the embedded default included) are converted once to an MLX folder in
the data home and loaded from there afterwards.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import mlx.core as mx
from mlx_lm.generate import stream_generate
from mlx_lm.sample_utils import make_sampler
from mlx_lm.utils import load as mlx_lm_load

from pocketsleep import control_tokens
from pocketsleep.config import Paths
from pocketsleep.errors import InputError
from pocketsleep.models import ResolvedModel, check_fits_in_memory

from . import mlx_lora
from .base import Engine, GenerationOptions


def default_dtype() -> str:
    # The CPU has no fast half-precision path; GPUs do (DESIGN.md §4).
    return "float32" if mx.default_device() == mx.cpu else "float16"


def converted_folder(gguf: Path, paths: Paths, dtype: str) -> Path:
    """Where the MLX conversion of `gguf` lives; keyed by the file's identity."""
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return paths.models / "converted" / f"{gguf.stem}-{key}-{dtype}"


def mlx_folder(resolved: ResolvedModel, paths: Paths, dtype: str) -> Path:
    """An MLX model folder for `resolved`, converting a GGUF the first time."""
    if resolved.format == "mlx":
        return resolved.path
    from .gguf_import import convert_gguf

    folder = converted_folder(resolved.path, paths, dtype)
    if not (folder / "config.json").exists():
        from .gguf_import import gguf_info

        info = gguf_info(resolved.path)
        check_fits_in_memory(int(info["n_params"]) * getattr(mx, dtype).size * 2,
                             f"converting {resolved.path} to MLX ({dtype})",
                             "use a smaller model, or --engine llamacpp")
        paths.private_subdir(folder.parent)
        convert_gguf(resolved.path, folder, dtype=dtype)
    return folder


def damaged(folder: Path, resolved: ResolvedModel, paths: Paths) -> str:
    """What to do about a damaged MLX folder, by what it is."""
    if resolved.format == "gguf":
        return f"its weights are damaged; delete {folder} and it is converted again"
    if paths.versions in folder.parents:
        return (f"this version of your personal model is damaged; delete {folder} and "
                "it is merged again (or roll back: pocketsleep models rollback)")
    return "its weights are damaged; copy or download the model again"


class MlxEngine(Engine):
    name = "mlx"

    def __init__(self, model, tokenizer, model_label: str):
        super().__init__(model_label)
        self.model = model
        self.tokenizer = tokenizer
        self.controls = control_tokens.texts_of(tokenizer)
        self.experts: list[tuple[Path, float]] = []

    @classmethod
    def load(cls, resolved: ResolvedModel, paths: Paths, dtype: str | None = None) -> "MlxEngine":
        dtype = dtype or default_dtype()
        folder = mlx_folder(resolved, paths, dtype)
        weights = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        # A folder stored in half precision doubles when loaded as float32 on a CPU.
        factor = 2 if resolved.format == "mlx" and dtype == "float32" else 1
        check_fits_in_memory(int(weights * factor * 1.2), f"the model in {folder}",
                             "use a smaller model (or a quantised GGUF with --engine llamacpp)")
        try:
            model, tokenizer = mlx_lm_load(str(folder))
        except (ValueError, FileNotFoundError, KeyError) as e:
            raise InputError(f"cannot load the MLX model in {folder} ({e})") from None
        except RuntimeError as e:
            if "safetensors" not in str(e):
                raise
            # Fix: a damaged weights file (a disk fault, a copy cut short) was a traceback.
            raise InputError(f"cannot load the MLX model in {folder}: "
                             f"{damaged(folder, resolved, paths)} ({e})") from None
        if resolved.format == "mlx":
            model.set_dtype(getattr(mx, dtype))
        model.eval()
        return cls(model, tokenizer, resolved.name)

    # -- generation ---------------------------------------------------------------

    def prompt_tokens(self, messages: list[dict]) -> list[int]:
        # Control-token text in a message is the message's text, not the template's.
        return self.tokenizer.apply_chat_template(
            control_tokens.plain_messages(messages, self.controls),
            add_generation_prompt=True, tokenize=True,
        )

    def _text_tokens(self, text: str) -> list[int]:
        return self.tokenizer.encode(control_tokens.plain(text, self.controls),
                                     add_special_tokens=False)

    def stream_chat(
        self, messages: list[dict], options: GenerationOptions = GenerationOptions()
    ) -> Iterator[str]:
        if options.seed is not None:
            mx.random.seed(options.seed)
        sampler = make_sampler(temp=options.temperature, top_p=options.top_p)
        prompt = self.prompt_tokens(messages)
        limit = getattr(getattr(self.model, "args", None), "max_position_embeddings", None)
        if limit and len(prompt) > limit:
            # Fix: MLX has no hard limit, so a prompt far past the model's context (a
            # pasted 1 MB message: ~750k tokens) ran for hours, memory growing, instead
            # of failing the way llama.cpp does.
            raise InputError(f"too long for the model's context: the prompt has {len(prompt)} "
                             f"tokens, the model reads at most {limit}; shorten the message "
                             "(or start a new conversation)")
        for response in stream_generate(
            self.model, self.tokenizer, prompt,
            max_tokens=options.max_tokens, sampler=sampler,
        ):
            if response.text:
                yield response.text

    def count_tokens(self, text: str) -> int:
        return len(self._text_tokens(text))

    def score(self, messages: list[dict], answer: str) -> list[float]:
        prompt = self.prompt_tokens(messages)
        answer_ids = self._text_tokens(answer)
        if not answer_ids:
            return []
        tokens = mx.array(prompt + answer_ids)[None]
        logits = self.model(tokens[:, :-1]).astype(mx.float32)
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        targets = tokens[:, 1:]
        picked = mx.take_along_axis(logprobs, targets[..., None], axis=-1)[0, :, 0]
        return picked[len(prompt) - 1 :].tolist()

    # -- experts ------------------------------------------------------------------

    def attach_expert(self, path: Path, scale: float = 1.0) -> None:
        mlx_lora.attach(self.model, Path(path), scale)
        self.experts.append((Path(path), scale))

    def detach_experts(self) -> None:
        mlx_lora.detach_all(self.model)
        self.experts.clear()

    def close(self) -> None:
        self.model = None
        self.tokenizer = None
        mx.clear_cache()
