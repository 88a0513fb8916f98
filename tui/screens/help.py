"""The key bindings, in a modal (F1; Esc or F1 closes it)."""

from __future__ import annotations

from typing import Iterable

from rich.table import Table
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

#: Keys that are not bindings of their own (handled by widgets) but worth knowing.
EXTRA_KEYS = [
    ("enter", "Send the message / open the highlighted conversation"),
    ("tab / shift+tab", "Move between the list, the messages and the prompt"),
    ("f1", "This help"),
    ("ctrl+p", "Command palette: every action, plus copying any message"),
    ("ctrl+q", "Quit (asks first if a background job is running)"),
]


def key_rows(bindings: Iterable[Binding], display) -> list[tuple[str, str]]:
    """(key, description) for each binding that has a description."""
    rows = [(display(b), b.tooltip or b.description) for b in bindings if b.description]
    return rows + EXTRA_KEYS


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close", show=False)]

    def __init__(self, rows: list[tuple[str, str]]) -> None:
        super().__init__(classes="modal")
        self.rows = rows

    def compose(self):
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", justify="right", no_wrap=True)
        table.add_column()
        for key, description in self.rows:
            table.add_row(key, description)
        with VerticalScroll(classes="dialog help"):
            yield Label("pocketsleep chat: keys", classes="question")
            yield Static(table)
            yield Static(
                "Private conversations are never learned from during sleep."
                " Forget deletes a conversation for good: its text, and what the model"
                " learned from it.",
                classes="note",
            )
