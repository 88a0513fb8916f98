"""Every piece of prompt text pocketsleep puts in front of the model, in one place.

What sleep teaches is "answer this question, with this system prompt, as if you had
read the day's conversations". For that to transfer to chat and `ask`, all of them
must build their messages here, with the same system prompt.
"""

from __future__ import annotations

from typing import Iterable, Sequence

SYSTEM_PROMPT = "You are a helpful personal assistant. Answer briefly."

HISTORY_HEADER = "Earlier conversations with this user:"


def with_system(messages: Sequence[dict]) -> list[dict]:
    """The chat as the model sees it: our system prompt, then the turns."""
    turns = [dict(m) for m in messages if m["role"] != "system"]
    return [{"role": "system", "content": SYSTEM_PROMPT}, *turns]


def closed_book(question: str) -> list[dict]:
    """A question with nothing of the past in context: how memory is probed."""
    return with_system([{"role": "user", "content": question}])


def render_history(conversations: Iterable[Sequence[dict]], dates: Iterable[str] | None = None) -> str:
    """Past conversations as plain text, oldest first, for a system prompt."""
    dates = list(dates) if dates is not None else None
    blocks = []
    for i, conversation in enumerate(conversations):
        lines = [f"[{dates[i]}]"] if dates else []
        for m in conversation:
            if m["role"] == "system":
                continue
            who = "User" if m["role"] == "user" else "Assistant"
            lines.append(f"{who}: {m['content']}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def in_context(history: str, question: str) -> list[dict]:
    """A question with past conversations in the system prompt (the teacher's view,
    and the in-context baseline)."""
    system = f"{SYSTEM_PROMPT}\n\n{HISTORY_HEADER}\n{history}" if history else SYSTEM_PROMPT
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]
