"""The main screen: conversations on the left, the open one on the right, status below.

Conversation actions live here (new, open, rename, private, copy); taking turns with
the model is in answering.py, forgetting (F8) in forgetting.py. All journal calls go
through `self.journal` (the app's Journal) on the main thread.
"""

from __future__ import annotations

import os

from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label

from pocketsleep.journal import Journal, Message
from pocketsleep.text import one_line

from ..info import gather_status
from ..widgets import ChatLog, ConversationList, JobPanel, PromptInput, StatusBar
from .answering import Answering, describe_error
from .forgetting import Forgetting
from .rename import RenameScreen

STATUS_REFRESH_S = 30.0
PRIVATE_NOTE = "● private: never learned from during sleep"


class ChatScreen(Answering, Forgetting, Screen):
    BINDINGS = [
        Binding("escape", "stop", "Stop answer",
                tooltip="Stop the answer being written (what arrived is kept)"),
        Binding("ctrl+n", "new", "New", tooltip="Start a new conversation"),
        Binding("ctrl+r", "regenerate", "Regenerate", tooltip="Answer your last message again"),
        Binding("f2", "rename", "Rename", tooltip="Rename this conversation"),
        Binding("ctrl+t", "toggle_private", "Private",
                tooltip="Mark this conversation private (never learned from) or not"),
        Binding("f8", "forget", "Forget",
                tooltip="Forget this conversation and what was learned (asks first)"),
        Binding("ctrl+y", "copy_last", "Copy answer", tooltip="Copy the last answer"),
    ]

    def __init__(self, conversation_id: int | None = None) -> None:
        super().__init__(id="chat-screen")
        self._initial_id = conversation_id
        self.conversation_id: int | None = None
        self.messages: list[Message] = []
        self.private_new = False  # for a conversation not yet in the journal
        self._started = set()

    @property
    def journal(self) -> Journal:
        return self.app.journal

    def compose(self):
        with Horizontal(id="main"):
            yield ConversationList(id="sidebar")
            with Vertical(id="chat"):
                yield Label("", id="conversation-title", markup=False)
                yield ChatLog(id="log")
                yield JobPanel(id="jobs")
                yield PromptInput(id="prompt")
        yield StatusBar(id="status")
        yield Footer()

    async def on_mount(self) -> None:
        if self._initial_id is not None:
            await self.open(self._initial_id)
        if self.conversation_id is None:
            await self.action_new()
        self.set_interval(STATUS_REFRESH_S, self.refresh_status)

    # -- what is shown -------------------------------------------------------------

    def reload_messages(self) -> None:
        self.messages = self.journal.messages(self.conversation_id)

    @property
    def is_private(self) -> bool:
        if self.conversation_id is None:
            return self.private_new
        return self.journal.conversation(self.conversation_id).private

    def refresh_all(self, bindings: bool = True) -> None:
        self.refresh_sidebar()
        self.refresh_title()
        self.refresh_status()
        if bindings:
            self.refresh_bindings()  # the footer shows only what applies now

    def refresh_sidebar(self) -> None:
        hidden = self.forgetting_ids()  # their text is about to go
        shown = [c for c in self.journal.conversations() if c.id not in hidden]
        self.query_one(ConversationList).show(shown, self.conversation_id)

    def refresh_title(self) -> None:
        if self.conversation_id is None:
            title = "New conversation"
        else:
            title = self.journal.conversation(self.conversation_id).display_title
        private = self.is_private
        label = self.query_one("#conversation-title", Label)
        label.update(one_line(title, 80) + (f"   {PRIVATE_NOTE}" if private else ""))
        label.set_class(private, "-private")

    def refresh_status(self) -> None:
        info = gather_status(self.journal, self.app.paths, self.app.engine_label(),
                             self.app.engine_out_of_date())
        self.query_one(StatusBar).show(info)
        self.leave_if_forgotten()

    def leave_if_forgotten(self) -> None:
        """`pocketsleep forget` run elsewhere on the conversation shown: start a new
        one (keeping the draft) rather than show an empty one that refuses messages."""
        cid = self.conversation_id
        if cid is None or self.generation is not None:
            return
        if self.journal.conversation(cid).status == "forgotten":
            self.app.notify(f"Conversation {cid} was forgotten elsewhere; this is a new "
                            "conversation (what you were typing is kept).", severity="warning")
            self.call_later(self.action_new)

    def set_answering(self, answering: bool) -> None:
        prompt = self.query_one(PromptInput)
        prompt.border_subtitle = "answering… Esc stops" if answering else ""
        prompt.set_class(answering, "-answering")

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "stop":
            return self.generation is not None
        if action in ("rename", "forget"):
            return True if self.conversation_id is not None else None
        if action == "regenerate":
            return True if any(m.role == "user" for m in self.messages) else None
        if action == "copy_last":
            return True if self.last_answer() is not None else None
        return True

    # -- conversation actions --------------------------------------------------------

    async def open(self, conversation_id: int) -> bool:
        await self.action_stop()
        try:
            conversation = self.journal.conversation(conversation_id)
        except Exception as e:
            self.app.notify(describe_error(e), severity="error")
            return False
        if conversation.status == "forgotten" or conversation_id in self.forgetting_ids():
            self.app.notify(f"Conversation {conversation_id} was forgotten.", severity="error")
            return False
        self.conversation_id = conversation_id
        self.reload_messages()
        await self.query_one(ChatLog).show(self.messages)
        self.refresh_all()
        self.query_one(PromptInput).focus()
        return True

    async def on_conversation_list_opened(self, message: ConversationList.Opened) -> None:
        message.stop()
        if message.conversation_id != self.conversation_id:
            await self.open(message.conversation_id)
        else:
            self.query_one(PromptInput).focus()

    async def action_new(self) -> None:
        await self.action_stop()
        self.conversation_id = None
        self.messages = []
        self.private_new = False
        await self.query_one(ChatLog).show([])
        self.refresh_all()
        self.query_one(PromptInput).focus()

    def action_rename(self) -> None:
        if self.conversation_id is None:
            self.app.notify("Send a first message to start the conversation, then rename it.",
                            severity="warning")
            return
        cid = self.conversation_id
        current = self.journal.conversation(cid).display_title

        def done(title: str | None) -> None:
            if title:
                self._journal_call(self.journal.rename, cid, title)
                self.refresh_all()

        self.app.push_screen(RenameScreen(current), done)

    def action_toggle_private(self) -> None:
        private = not self.is_private
        if self.conversation_id is None:
            self.private_new = private
        elif not self._journal_call(self.journal.set_private, self.conversation_id, private)[0]:
            return
        self.app.notify("Private: this conversation will never be learned from." if private
                        else "No longer private: it can be learned from during sleep.")
        self.refresh_all()

    def last_answer(self) -> Message | None:
        return next((m for m in reversed(self.messages) if m.role == "assistant"), None)

    def action_copy_last(self) -> None:
        answer = self.last_answer()
        if answer is None:
            self.app.notify("No answer to copy yet.", severity="warning")
            return
        self.copy_message(answer.id)

    def copy_message(self, message_id: int) -> None:
        message = next((m for m in self.messages if m.id == message_id), None)
        if message is None:
            return
        # Textual copies through the terminal (an OSC 52 sequence): no clipboard tool
        # needed, even over ssh, but tmux passes it on only when told to.
        self.app.copy_to_clipboard(message.content)
        what = "answer" if message.role == "assistant" else "message"
        note = (f"Copied the {what} ({len(message.content):,} characters) to the "
                "terminal's clipboard.")
        if os.environ.get("TMUX"):
            note += " Inside tmux it arrives only with `set -g set-clipboard on`."
        self.app.notify(note)

    def _journal_call(self, fn, *args) -> tuple[bool, object]:
        """Run a journal write; a failure becomes an error notification, not a crash."""
        try:
            return True, fn(*args)
        except Exception as e:
            self.app.notify(describe_error(e), severity="error")
            return False, None
