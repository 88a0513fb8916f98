"""One answer being generated, and the thread body that generates it.

The engine blocks while it computes, so generation runs in a thread worker. That
thread never touches widgets or the journal (a sqlite3 connection belongs to the
thread that opened it): it only posts the messages below to the chat screen, whose
handlers run on the app's main thread.

Cancelling is cooperative: Esc sets `cancelled`, the main thread stores what it has
received at once, and the thread stops at its next piece, closing the engine's
stream (which cancels generation in the engine) and posting nothing more. The
engine lock keeps a new answer from starting before the old one has let go.
"""

from __future__ import annotations

import itertools
import threading
from typing import Callable

from textual.message import Message
from textual.message_pump import MessagePump

from pocketsleep.backends.base import Engine, GenerationOptions

from .history import COUNT_TOKENS_LIMIT

_ids = itertools.count(1)


class Generation:
    """State of one answer; `parts` is only touched on the main thread."""

    def __init__(self, conversation_id: int, prompt: list[dict]):
        self.id = next(_ids)
        self.conversation_id = conversation_id
        self.prompt = prompt
        self.cancelled = threading.Event()
        self.parts: list[str] = []
        # The personal model's version answering (Engine.personal_version), set when
        # it starts: the journal records which version wrote each answer.
        self.model_version: int | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    class Chunk(Message):
        """A piece of the answer arrived."""

        def __init__(self, generation_id: int, text: str) -> None:
            super().__init__()
            self.generation_id = generation_id
            self.text = text

    class Finished(Message):
        """The answer is complete."""

        def __init__(self, generation_id: int, text: str, token_count: int | None) -> None:
            super().__init__()
            self.generation_id = generation_id
            self.text = text
            self.token_count = token_count

    class Failed(Message):
        """The engine raised; `partial` is what it had produced by then."""

        def __init__(self, generation_id: int, error: BaseException, partial: str) -> None:
            super().__init__()
            self.generation_id = generation_id
            self.error = error
            self.partial = partial


def count_tokens(engine: Engine, text: str) -> int | None:
    """The token count if it is cheap to get, else None (it is only bookkeeping)."""
    if len(text) > COUNT_TOKENS_LIMIT:
        return None
    try:
        return engine.count_tokens(text)
    except Exception:
        return None


def generate(
    engine: Engine,
    lock: threading.Lock,
    generation: Generation,
    options: GenerationOptions,
    post: Callable[[Message], object],
) -> None:
    """Thread body: stream the answer, posting Chunk / Finished / Failed."""
    pieces: list[str] = []
    with lock:
        if generation.cancelled.is_set():
            return
        try:
            stream = engine.stream_chat(generation.prompt, options)
            try:
                for piece in stream:
                    if generation.cancelled.is_set():
                        return
                    if piece:
                        pieces.append(piece)
                        post(Generation.Chunk(generation.id, piece))
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
            text = "".join(pieces)
            post(Generation.Finished(generation.id, text, count_tokens(engine, text)))
        except Exception as error:  # any engine failure must leave the app usable
            if not generation.cancelled.is_set():
                post(Generation.Failed(generation.id, error, "".join(pieces)))


# A MessagePump's post_message is safe to call from another thread.
def poster(target: MessagePump) -> Callable[[Message], object]:
    return target.post_message
