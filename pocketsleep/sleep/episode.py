"""Tonight's episode: the pending, non-private conversations, as the model will see them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import prompts
from ..journal import Journal

# A statement worth a question has a few words at least ("ok thanks" has nothing to learn).
MIN_STATEMENT_WORDS = 4
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Episode:
    conversation_ids: tuple[int, ...]
    conversations: tuple[tuple[dict, ...], ...]
    dates: tuple[str, ...]

    @classmethod
    def from_journal(cls, journal: Journal) -> "Episode":
        pending = journal.pending_conversations()
        return cls(
            conversation_ids=tuple(c.id for c in pending),
            conversations=tuple(tuple(journal.turns(c.id)) for c in pending),
            dates=tuple(c.started_at[:10] for c in pending),
        )

    @property
    def empty(self) -> bool:
        return not any(self.conversations)

    def history(self) -> str:
        """The episode as text for the teacher's system prompt."""
        return prompts.render_history(self.conversations, self.dates)

    def statements(self) -> list[str]:
        """What the user said, sentence by sentence, in order (facts live here)."""
        out = []
        for conversation in self.conversations:
            for m in conversation:
                if m["role"] != "user":
                    continue
                for sentence in _SENTENCE_END.split(m["content"].strip()):
                    if len(sentence.split()) >= MIN_STATEMENT_WORDS:
                        out.append(sentence.strip())
        return out

    def token_estimate(self) -> int:
        return sum(len(m["content"].split()) for c in self.conversations for m in c) * 4 // 3
