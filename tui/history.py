"""Pure helpers between journal rows and what the chat app shows or sends.

Nothing here touches Textual or SQLite, so the rules are easy to test and to reuse.
"""

from __future__ import annotations

from typing import Sequence

from pocketsleep.journal import Message, superseded_ids
from pocketsleep.prompts import with_system
from pocketsleep.text import one_line, printable

#: Longest message body rendered on screen. Longer ones (a pasted 1 MB log, a runaway
#: answer) are cut with a note: Markdown-parsing and laying out megabytes of text would
#: freeze the terminal. The journal always keeps the whole text.
DISPLAY_LIMIT = 16_000

#: Texts longer than this are not tokenised just to record `token_count`.
COUNT_TOKENS_LIMIT = 8_000

TITLE_WORDS = 6
TITLE_CHARS = 60


def title_from(text: str) -> str:
    """A conversation's title: the first few words of its first message."""
    words = text.split()
    title = " ".join(words[:TITLE_WORDS]) + ("…" if len(words) > TITLE_WORDS else "")
    return one_line(title, TITLE_CHARS) or "Untitled"


def safe_display(text: str) -> str:
    """Text made harmless for the terminal: control characters become visible escapes."""
    return printable(text)


def prompt_for_answer(messages: Sequence[Message]) -> list[dict]:
    """The {role, content} turns to send to the engine to answer the last user turn.

    Everything after the last user message is dropped (regenerate answers that turn
    again), and of several answers to one turn only the last is kept.
    """
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last_user is None:
        return []
    kept = messages[: last_user + 1]
    skip = superseded_ids(kept)
    return [{"role": m.role, "content": m.content} for m in kept if m.id not in skip]


def for_engine(turns: list[dict]) -> list[dict]:
    """The turns as the model sees them: with pocketsleep's one system prompt.

    Sleep teaches "answer as if you had read the day, with this system prompt", so
    chat must put the same one in front (pocketsleep.prompts, shared with `ask`).
    """
    return with_system(turns)
