"""The chat screen's F8: forget the open conversation, as `pocketsleep forget` does.

A conversation no night has learned is only text: it is deleted here, at once. One
an expert learned is in the weights too: `pocketsleep forget ID` runs in its own
process, as a background job with visible progress (the experts trained on it are
rebuilt without it, minutes each on a CPU, and the model is merged again), and the
chat stays usable meanwhile. That process deletes the text as well (it first notes
the stored questions about it, to check afterwards that they are no longer
answered); until it ends the conversation is hidden and cannot be opened. The
personal model it leaves is loaded before the chat's next answer
(PocketsleepApp.reload_engine).
"""

from __future__ import annotations

from pocketsleep.forgetting import learned_from, rebuild_note
from pocketsleep.text import one_line

from .confirm import ConfirmScreen

# Jobs that hold the sleep lock: a forget started beside one would stop half-way.
WEIGHT_JOBS = ("sleep", "forget")


class Forgetting:
    """Mixed into ChatScreen; expects its attributes (journal, conversation_id, ...)."""

    def forgetting_ids(self) -> set[int]:
        """Conversations a background job is forgetting right now."""
        return {int(j.args[1]) for j in self.app.jobs if j.running and j.args[0] == "forget"}

    def action_forget(self) -> None:
        if self.conversation_id is None:
            self.app.notify("Nothing to forget: this conversation is not saved yet.",
                            severity="warning")
            return
        cid = self.conversation_id
        c = self.journal.conversation(cid)
        learned = learned_from(self.journal, cid)
        busy = [j.title for j in self.app.jobs if j.running and j.args[0] in WEIGHT_JOBS]
        if learned and busy:
            self.app.notify(f"{busy[0]} is running: forget this conversation when it has "
                            "finished (what was learned from it must be rebuilt).",
                            severity="warning")
            return
        question = f"Forget “{one_line(c.display_title, 50)}”? Its {c.message_count} messages"
        if learned:
            question += (" are deleted from the journal for good. "
                         + (rebuild_note(learned) or "What was learned from it is removed "
                            "from your personal model.")
                         + " It runs in the background; you can keep chatting.")
        else:
            question += " are deleted from the journal for good and never learned from."

        async def done(yes: bool | None) -> None:
            if not yes:
                return
            if self.generation is not None and self.generation.conversation_id == cid:
                await self.action_stop()
            if learned:
                await self._forget_in_background(cid)
            else:
                await self._forget_text(cid)

        self.app.push_screen(ConfirmScreen(question, yes="Forget"), done)

    async def _forget_text(self, cid: int) -> None:
        ok, removed = self._journal_call(self.journal.forget, cid)
        if ok:
            self.app.notify(f"Forgot the conversation ({removed} messages deleted).")
        if self.conversation_id == cid:
            await self.action_new()
        self.refresh_all()

    async def _forget_in_background(self, cid: int) -> None:
        await self.app.run_subcommand(f"Forget conversation {cid}", "forget", str(cid),
                                      "--yes", "--verbose",
                                      outcome_from=f"Forgot conversation {cid}:")
        if self.conversation_id == cid:
            await self.action_new()  # also hides it from the sidebar
        else:
            self.refresh_all()
