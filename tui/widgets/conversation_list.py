"""The sidebar: past conversations from the journal, newest first."""

from __future__ import annotations

from textual.content import Content
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from pocketsleep.journal import Conversation
from pocketsleep.text import one_line

from ..info import format_when

TITLE_WIDTH = 26
STATUS_WORDS = {"consolidated": "learned"}


def describe(conversation: Conversation) -> Content:
    """Two lines: the title, then when / how many / private or learned."""
    title = one_line(conversation.display_title, TITLE_WIDTH)
    n = conversation.message_count
    meta = f"{format_when(conversation.updated_at)[5:]} · {n} msg{'' if n == 1 else 's'}"
    parts: list = [(title, "bold"), "\n", (meta, "dim")]
    if conversation.status in STATUS_WORDS:
        parts += [" · ", (STATUS_WORDS[conversation.status], "$success")]
    if conversation.private:
        parts += ["\n", ("● private", "bold $warning")]
    return Content.assemble(*parts)


class ConversationList(OptionList):
    """Pick a conversation to open; Enter (or a click) opens it."""

    BORDER_TITLE = "Conversations"

    class Opened(Message):
        """The user chose a conversation to open."""

        def __init__(self, conversation_id: int) -> None:
            super().__init__()
            self.conversation_id = conversation_id

    def show(self, conversations: list[Conversation], current_id: int | None) -> None:
        """Show the journal's live conversations (forgotten ones are gone)."""
        live = [c for c in conversations if c.status != "forgotten"]
        live.sort(key=lambda c: (c.updated_at, c.id), reverse=True)
        self.set_options(Option(describe(c), id=str(c.id)) for c in live)
        self.select(current_id)
        self.border_subtitle = f"{len(live)}" if live else "none yet"

    def select(self, conversation_id: int | None) -> None:
        """Highlight the open conversation (none for a new one)."""
        if conversation_id is None:
            self.highlighted = None
            return
        try:
            self.highlighted = self.get_option_index(str(conversation_id))
        except Exception:  # not listed (e.g. just forgotten)
            self.highlighted = None

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(self.Opened(int(event.option.id)))
