"""The one small interface every inference/training engine implements.

An engine holds one loaded model and can:
- stream a chat completion from a list of {role, content} messages,
- score the log-probability of each token of a given answer (sleep needs this),
- count tokens,
- attach and detach LoRA experts (folders written by the sleep job).

Engines: `mlx` (Metal / CUDA / CPU; can also train), `llamacpp` (GGUF, inference
only) and `fake` (scripted replies, for fast tests of everything above the engines).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass(frozen=True)
class GenerationOptions:
    max_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None


class Engine(abc.ABC):
    """A loaded model that can chat, score and wear LoRA experts."""

    #: short engine name: "mlx", "llamacpp" or "fake"
    name: str = "engine"
    #: The number of the personal model's version loaded ("v3" -> 3), set by
    #: engines.open_engine; None for the base model, the base wearing experts not yet
    #: merged, or another model. Each answer records it (messages.model_version).
    personal_version: int | None = None

    def __init__(self, model_label: str):
        # What the user would call the model (e.g. "default", a path, a repo id).
        self.model_label = model_label

    @abc.abstractmethod
    def stream_chat(
        self, messages: list[dict], options: GenerationOptions = GenerationOptions()
    ) -> Iterator[str]:
        """Yield the assistant's answer to `messages` piece by piece.

        Stopping iteration early (closing the generator) cancels generation.
        """

    def chat(self, messages: list[dict], options: GenerationOptions = GenerationOptions()) -> str:
        return "".join(self.stream_chat(messages, options))

    @abc.abstractmethod
    def count_tokens(self, text: str) -> int:
        """Number of tokens `text` takes, without special tokens."""

    @abc.abstractmethod
    def score(self, messages: list[dict], answer: str) -> list[float]:
        """Log-probability (natural log) of each token of `answer` as the assistant's
        reply to `messages`, under the current model and attached experts."""

    @abc.abstractmethod
    def attach_expert(self, path: Path, scale: float = 1.0) -> None:
        """Switch on the LoRA expert stored in folder `path`."""

    @abc.abstractmethod
    def detach_experts(self) -> None:
        """Switch every attached expert off again."""

    def close(self) -> None:
        """Free the model; the engine is unusable afterwards."""
