"""The bottom line: engine and model, personal model, last and next sleep, backlog."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from pocketsleep.text import one_line

from ..info import StatusInfo

SEP = (" │ ", "dim")


class StatusBar(Static):
    def __init__(self, **kwargs) -> None:
        super().__init__("", markup=False, **kwargs)
        self.info: StatusInfo | None = None

    def show(self, info: StatusInfo) -> None:
        self.info = info
        self.update(Content.assemble(
            (one_line(info.engine, 36), "bold"), SEP,
            ("personal: ", "dim"), info.personal_model, SEP,
            ("last sleep: ", "dim"), info.last_sleep, SEP,
            ("waiting: ", "dim"), str(info.waiting), SEP,
            ("next sleep: ", "dim"), info.next_sleep,
        ))
        self.tooltip = (
            f"{info.waiting} conversation(s) wait to be learned during sleep"
            " (private ones never are)"
        )
