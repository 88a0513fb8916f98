"""Tonight's episode: the pending, non-private conversations, as the model will see them."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .. import prompts
from ..journal import Journal

# A message worth questions has a few words at least ("ok thanks" has nothing to learn).
MIN_STATEMENT_WORDS = 4
# Fix: a message is learned from its first 4,000 characters (about 1,000 tokens; the
# journal keeps it whole). A pasted 1 MB message (~750,000 tokens) made the teacher
# read all of it for every question: the night ran for hours, and again every night,
# since its conversation stays pending until a night succeeds.
MAX_MESSAGE_CHARS = 4_000


@dataclass(frozen=True)
class Exchange:
    """One thing the user said, with the conversation around it.

    `context` is the conversation up to and including the assistant's reply to the
    statement; `exchange` is just the statement and that reply. Both are views a
    teacher can answer questions from (see selfstudy.teacher_views)."""

    statement: str
    context: tuple[dict, ...]

    @property
    def exchange(self) -> tuple[dict, ...]:
        return self.context[-2:] if self.context[-1]["role"] == "assistant" else self.context[-1:]


@dataclass(frozen=True)
class Episode:
    conversation_ids: tuple[int, ...]
    conversations: tuple[tuple[dict, ...], ...]
    dates: tuple[str, ...]
    # The last message id when the episode was taken: what the night has read.
    last_message_id: int | None = None

    @classmethod
    def from_journal(cls, journal: Journal) -> "Episode":
        # Read the id first: a message written after it counts as unread even if the
        # episode happens to include it (learned again next night, never lost).
        last = journal.last_message_id()
        pending = journal.pending_conversations()
        return cls(
            conversation_ids=tuple(c.id for c in pending),
            conversations=tuple(tuple(journal.turns(c.id)) for c in pending),
            dates=tuple(c.started_at[:10] for c in pending),
            last_message_id=last,
        )

    @classmethod
    def of(cls, journal: Journal, conversation_ids) -> "Episode":
        """Given conversations as an episode, leaving out forgotten ones (their text is
        gone): what a consolidation or a rebuild after `forget` learns from again."""
        kept = [c for c in (journal.conversation(cid) for cid in conversation_ids)
                if c.status != "forgotten"]
        return cls(
            conversation_ids=tuple(c.id for c in kept),
            conversations=tuple(tuple(journal.turns(c.id)) for c in kept),
            dates=tuple(c.started_at[:10] for c in kept),
        )

    def __post_init__(self):
        # However the episode is made, the model sees long messages cut.
        object.__setattr__(self, "conversations", tuple(
            tuple(m if len(m["content"]) <= MAX_MESSAGE_CHARS
                  else {**m, "content": m["content"][:MAX_MESSAGE_CHARS]} for m in c)
            for c in self.conversations))

    def part(self, start: int, stop: int) -> "Episode":
        """Conversations start..stop-1 (what a night's budget let it study; the rest
        stay pending). The last message id read is the whole episode's."""
        return replace(self, conversation_ids=self.conversation_ids[start:stop],
                       conversations=self.conversations[start:stop],
                       dates=self.dates[start:stop])

    @property
    def empty(self) -> bool:
        return not any(self.conversations)

    def history(self) -> str:
        """The episode as text (the in-context baseline's view of it)."""
        return prompts.render_history(self.conversations, self.dates)

    def exchanges(self) -> list[Exchange]:
        """Every user message with something in it, in order (facts live there)."""
        out = []
        for conversation in self.conversations:
            turns = [m for m in conversation if m["role"] != "system"]
            for i, m in enumerate(turns):
                if m["role"] == "user" and len(m["content"].split()) >= MIN_STATEMENT_WORDS:
                    end = i + 2 if i + 1 < len(turns) and turns[i + 1]["role"] == "assistant" else i + 1
                    out.append(Exchange(m["content"].strip(), tuple(turns[:end])))
        return out

    def conversation_of(self, statement: str | None) -> int | None:
        """The conversation in which the user said `statement`, a message or a
        sentence of one (probes keep it, so that `forget` finds the probes written
        from a conversation)."""
        if not statement:
            return None
        said = [(cid, m["content"].strip()) for cid, conversation
                in zip(self.conversation_ids, self.conversations)
                for m in conversation if m["role"] == "user"]
        return next((cid for cid, text in said if text == statement),
                    next((cid for cid, text in said if statement in text), None))

    def statements(self) -> list[str]:
        return [x.statement for x in self.exchanges()]

    def token_estimate(self) -> int:
        return sum(len(m["content"].split()) for c in self.conversations for m in c) * 4 // 3
