"""One message on screen, and the scrolling log of a conversation's messages.

Answers are Markdown and grow while they stream in (through Textual's MarkdownStream,
which batches pieces when they come faster than the screen redraws). Your own
messages are shown as plain text. Either way control characters are shown as
visible escapes, and a message longer than DISPLAY_LIMIT is cut on screen with a
note: the journal keeps every character.
"""

from __future__ import annotations

from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Label, Markdown, Static
from textual.widgets.markdown import MarkdownStream

from pocketsleep.journal import Message

from ..history import DISPLAY_LIMIT, safe_display, superseded_ids

ROLE_LABELS = {"user": "you", "assistant": "assistant", "system": "system"}


def truncation_note(length: int) -> str:
    return (
        f"… showing the first {DISPLAY_LIMIT:,} of {length:,} characters; the whole"
        " message is kept in the journal (Ctrl+P → Copy message)"
    )


class MessageView(Vertical):
    """A message: a small role line, then the body."""

    def __init__(self, role: str, content: str = "", *, message_id: int | None = None,
                 state: str = "complete", streaming: bool = False) -> None:
        super().__init__(classes=f"message -{role}")
        self.role = role
        self.message_id = message_id
        self._initial = content
        self._shown = 0  # characters displayed so far (capped at DISPLAY_LIMIT)
        self._length = 0  # characters received so far
        self._stream: MarkdownStream | None = None
        self._streaming = streaming
        self.state = state
        if state == "cancelled":
            self.add_class("-cancelled")

    def compose(self):
        yield Label(self._role_line(), classes="role")
        body, self._length = self._clip(self._initial)
        self._shown = len(body)
        if self.role == "assistant":
            yield Markdown(safe_display(body), open_links=False, classes="body")
        else:
            yield Static(Content(safe_display(body)), classes="body", markup=False)
        yield Static(truncation_note(self._length), classes="note", markup=False)

    def on_mount(self) -> None:
        self._sync_note()
        if self._streaming:
            self._stream = Markdown.get_stream(self.query_one(Markdown))

    @staticmethod
    def _clip(text: str) -> tuple[str, int]:
        return text[:DISPLAY_LIMIT], len(text)

    def _role_line(self) -> str:
        label = ROLE_LABELS.get(self.role, self.role)
        if self.state == "cancelled":
            label += " · stopped"
        if self.has_class("-superseded"):
            label += " · replaced by a newer answer"
        if self.has_class("-waiting"):
            label += " · waiting for the model to load…"
        return label

    def _sync_note(self) -> None:
        note = self.query_one(".note", Static)
        note.display = self._length > DISPLAY_LIMIT
        if note.display:
            note.update(truncation_note(self._length))
        self.query_one(".role", Label).update(self._role_line())

    async def append(self, text: str) -> None:
        """Add a streamed piece (only the first DISPLAY_LIMIT characters are drawn)."""
        was_over = self._length > DISPLAY_LIMIT
        self._length += len(text)
        room = DISPLAY_LIMIT - self._shown
        if room > 0 and self._stream is not None:
            piece = text[:room]
            self._shown += len(piece)
            await self._stream.write(safe_display(piece))
        if not was_over and self._length > DISPLAY_LIMIT:
            self._sync_note()

    async def finish(self, state: str = "complete") -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.state = state
        self.set_class(state == "cancelled", "-cancelled")
        self._sync_note()

    def mark(self, css_class: str, on: bool = True) -> None:
        """Mark as -superseded or -waiting, or unmark (the role line says so)."""
        self.set_class(on, css_class)
        if self.is_mounted:
            self._sync_note()


class ChatLog(VerticalScroll):
    """The messages of the open conversation, newest at the bottom."""

    can_focus = True

    async def show(self, messages: list[Message]) -> None:
        self.anchor(False)
        await self.remove_children()
        replaced = superseded_ids(messages)
        views = []
        for m in messages:
            view = MessageView(m.role, m.content, message_id=m.id, state=m.state)
            if m.id in replaced:
                view.add_class("-superseded")
            views.append(view)
        if views:
            await self.mount_all(views)
        self.follow()

    async def add(self, view: MessageView) -> MessageView:
        await self.mount(view)
        self.follow()
        return view

    def follow(self) -> None:
        """Keep the newest message in view once there is something to scroll.

        (Anchoring while everything still fits would push short conversations to
        the bottom of the log.)
        """
        self.call_after_refresh(self._follow)

    def _follow(self) -> None:
        if not self.is_anchored and self.max_scroll_y > 0:
            self.anchor()

    def answers(self) -> list[MessageView]:
        return [v for v in self.query(MessageView) if v.role == "assistant"]
