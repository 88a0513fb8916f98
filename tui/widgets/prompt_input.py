"""Where you type: Enter sends the message (posted as PromptInput.Send)."""

from __future__ import annotations

from textual.message import Message
from textual.widgets import Input

PLACEHOLDER = "Message the assistant (Enter sends · Esc stops · Ctrl+P commands · F1 help)"


class PromptInput(Input):
    class Send(Message):
        """The user pressed Enter on a non-empty prompt."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, **kwargs) -> None:
        super().__init__(placeholder=PLACEHOLDER, **kwargs)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self.post_message(self.Send(event.value))
