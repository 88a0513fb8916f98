"""A scripted engine for fast tests of everything above the engines (chat app, CLI).

Replies are queued with `enqueue()` (as simonw/llm's mock model does) and streamed
word by word; with nothing queued it echoes the last user message. Each call's
messages are recorded in `prompts`. `fail_with` makes the next call raise, and
`delay` slows streaming so cancellation can be tested.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Iterator

from .base import Engine, GenerationOptions


class FakeEngine(Engine):
    name = "fake"

    def __init__(self, model_label: str = "fake", delay: float = 0.0):
        super().__init__(model_label)
        self.delay = delay
        self.queue: list[str] = []
        self.prompts: list[list[dict]] = []
        self.experts: list[tuple[Path, float]] = []
        self.fail_with: Exception | None = None

    def enqueue(self, *replies: str) -> "FakeEngine":
        self.queue.extend(replies)
        return self

    def stream_chat(
        self, messages: list[dict], options: GenerationOptions = GenerationOptions()
    ) -> Iterator[str]:
        self.prompts.append([dict(m) for m in messages])
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            raise error
        if self.queue:
            reply = self.queue.pop(0)
        else:
            last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            reply = f"You said: {last_user}"
        words = reply.split(" ")
        for i, word in enumerate(words[: options.max_tokens]):
            if self.delay:
                time.sleep(self.delay)
            yield word if i == 0 else " " + word

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def score(self, messages: list[dict], answer: str) -> list[float]:
        # A uniform distribution over a 100-word vocabulary: deterministic and finite.
        return [-math.log(100.0)] * self.count_tokens(answer)

    def attach_expert(self, path: Path, scale: float = 1.0) -> None:
        self.experts.append((Path(path), scale))

    def detach_experts(self) -> None:
        self.experts.clear()
