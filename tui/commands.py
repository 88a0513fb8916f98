"""The chat's entries in the command palette (Ctrl+P).

Only actions that make sense right now are offered. "Sleep now" and "Export" appear
only when the installed CLI has those subcommands; they run in their own process.
"""

from __future__ import annotations

from pocketsleep.config import Paths

from functools import partial
from typing import TYPE_CHECKING, Iterable

from textual.app import SystemCommand

from pocketsleep.text import one_line

from . import jobs

if TYPE_CHECKING:
    from .app import PocketsleepApp
    from .screens import ChatScreen

COPY_RECENT = 50  # how many recent messages get a "Copy message" entry

#: subcommand -> (palette title, help); offered only if `pocketsleep <name>` exists.
SUBCOMMANDS = {
    "sleep": ("Sleep now", "Consolidate today's conversations now, in the background",
              lambda paths: []),
    "export": ("Export", "Export the personal model to exports/personal-model.gguf "
               "in the data home, in the background",
               lambda paths: ["--gguf", str(paths.exports / "personal-model.gguf"), "--force"]),
}


def chat_commands(app: "PocketsleepApp", chat: "ChatScreen") -> Iterable[SystemCommand]:
    yield SystemCommand("New conversation", "Start a new conversation (Ctrl+N)",
                        chat.action_new)
    if chat.conversation_id is not None:
        yield SystemCommand("Rename conversation", "Give this conversation a title (F2)",
                            chat.action_rename)
        yield SystemCommand("Forget conversation",
                            "Delete this conversation for good, and what was learned from it"
                            " (F8)",
                            chat.action_forget)
    if chat.is_private:
        yield SystemCommand("Mark conversation not private",
                            "Let sleep learn from this conversation (Ctrl+T)",
                            chat.action_toggle_private)
    else:
        yield SystemCommand("Mark conversation private",
                            "Never learn from this conversation during sleep (Ctrl+T)",
                            chat.action_toggle_private)
    if chat.generation is not None:
        yield SystemCommand("Stop answer", "Stop the answer being written (Esc)",
                            chat.action_stop)
    if any(m.role == "user" for m in chat.messages):
        yield SystemCommand("Regenerate last answer", "Answer your last message again (Ctrl+R)",
                            chat.action_regenerate)
    if chat.last_answer() is not None:
        yield SystemCommand("Copy last answer", "Copy the last answer to the clipboard (Ctrl+Y)",
                            chat.action_copy_last)
    for n, m in enumerate(chat.messages, 1):
        if n > len(chat.messages) - COPY_RECENT:
            yield SystemCommand(
                f"Copy message {n} ({m.role}): {one_line(m.content, 50)}",
                "Copy this message to the clipboard", partial(chat.copy_message, m.id),
                discover=False,
            )
    if app.engine_state == "failed":
        yield SystemCommand("Reload model", "Try loading the model again", app.load_engine)
    yield SystemCommand("Help", "Show the key bindings (F1)", app.action_help)
    available = jobs.available()
    for name, (title, help_text, extra_args) in SUBCOMMANDS.items():
        if name in available:
            args = [name, *extra_args(app.paths or Paths.resolve())]
            yield SystemCommand(title, f"{help_text} (pocketsleep {' '.join(args)})",
                                partial(app.run_subcommand, title, *args))
