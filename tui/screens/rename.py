"""Ask for a conversation's new title; dismisses with the title, or None to keep it."""

from __future__ import annotations

from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

MAX_TITLE = 200


class RenameScreen(ModalScreen["str | None"]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    def __init__(self, title: str) -> None:
        super().__init__(classes="modal")
        self.current = title

    def compose(self):
        with Vertical(classes="dialog"):
            yield Label("Rename conversation (Enter saves, Esc cancels)", classes="question")
            yield Input(self.current, max_length=MAX_TITLE, id="title")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        title = " ".join(event.value.split())
        self.dismiss(title or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
