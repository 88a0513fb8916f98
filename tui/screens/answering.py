"""The chat screen's turn-taking: send, stream the answer, stop, regenerate.

Journal rules (the journal is only used on this, the main, thread):
- the user's turn is committed before generation starts, so killing the app loses
  nothing already sent;
- the answer is committed when complete; a stopped (Esc) or failed one is committed
  with state="cancelled" and whatever text had arrived (nothing if none had);
- the conversation itself is started in the journal by its first user message;
- each answer records the personal model's version that wrote it; a version made
  while the chat is open is loaded before the next answer (PocketsleepApp.reload_engine).
"""

from __future__ import annotations

from functools import partial

from pocketsleep.errors import PocketsleepError

from ..generation import Generation, count_tokens, generate
from ..history import COUNT_TOKENS_LIMIT, for_engine, prompt_for_answer, title_from
from ..widgets import ChatLog, MessageView, PromptInput


def describe_error(error: BaseException) -> str:
    if isinstance(error, PocketsleepError):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class Answering:
    """Mixed into ChatScreen; expects its attributes (journal, conversation_id, ...)."""

    generation: Generation | None = None
    answer_view: MessageView | None = None
    _started: set[int]

    # -- sending -----------------------------------------------------------------

    async def on_prompt_input_send(self, message: PromptInput.Send) -> None:
        message.stop()
        await self.send(message.text)

    async def send(self, text: str) -> bool:
        """Commit the user's turn, show it, and start answering it."""
        app = self.app
        if self.generation is not None:
            app.notify("Still answering: press Esc to stop it first.", severity="warning")
            return False
        if app.engine_state == "failed":
            app.notify(f"No model to answer: {app.engine_error}. Fix it, then use"
                       " Ctrl+P → Reload model.", severity="error", timeout=10)
            return False
        self.query_one(PromptInput).value = ""
        try:
            if self.conversation_id is None:
                self.conversation_id = self.journal.start_conversation(
                    title_from(text), private=self.private_new)
            self.journal.add_message(self.conversation_id, "user", text,
                                     token_count=self._cheap_count(text))
        except Exception as e:  # journal locked, disk full, forgotten meanwhile ...
            app.notify(f"Could not save your message: {describe_error(e)}", severity="error")
            self.query_one(PromptInput).value = text
            return False
        self.reload_messages()
        await self.query_one(ChatLog).add(
            MessageView("user", text, message_id=self.messages[-1].id))
        self.refresh_all(bindings=False)  # start_answer refreshes them
        await self.start_answer()
        return True

    def _cheap_count(self, text: str) -> int | None:
        """Count tokens now only if the engine is idle and the text short."""
        app = self.app
        if app.engine is None or len(text) > COUNT_TOKENS_LIMIT:
            return None
        if not app.engine_lock.acquire(blocking=False):
            return None
        try:
            return count_tokens(app.engine, text)
        finally:
            app.engine_lock.release()

    # -- answering ----------------------------------------------------------------

    async def start_answer(self) -> None:
        """Answer the last user turn of the open conversation."""
        turns = prompt_for_answer(self.messages)
        if not turns:
            return
        generation = Generation(self.conversation_id, for_engine(turns))
        self.generation = generation
        self.answer_view = await self.query_one(ChatLog).add(
            MessageView("assistant", streaming=True))
        self.set_answering(True)
        self.refresh_bindings()
        if self.app.engine_out_of_date():
            self.app.reload_engine()  # between two answers; this one waits for it
        if self.app.engine is not None:
            self._launch(generation)
        else:
            self.answer_view.mark("-waiting")

    def _launch(self, generation: Generation) -> None:
        app = self.app
        self._started.add(generation.id)
        generation.model_version = app.engine.personal_version
        if self.answer_view is not None:
            self.answer_view.mark("-waiting", False)
        self.run_worker(
            partial(generate, app.engine, app.engine_lock, generation, app.options,
                    self.post_message),
            name=f"answer-{generation.id}", group="answer", thread=True,
            exit_on_error=False,
        )

    def engine_ready(self) -> None:
        """The model finished loading: answer the turn that was waiting for it."""
        g = self.generation
        if g is not None and g.id not in self._started:
            self._launch(g)

    async def engine_failed(self) -> None:
        """The model could not load: drop the waiting answer (the user turn stays)."""
        if self.generation is not None and self.generation.id not in self._started:
            self.generation = None
            await self._end_answer(None)

    def _current(self, generation_id: int) -> Generation | None:
        g = self.generation
        return g if g is not None and g.id == generation_id else None

    async def on_generation_chunk(self, message: Generation.Chunk) -> None:
        g = self._current(message.generation_id)
        if g is None:
            return  # a stopped answer's last pieces
        g.parts.append(message.text)
        await self.answer_view.append(message.text)
        self.query_one(ChatLog).follow()

    async def on_generation_finished(self, message: Generation.Finished) -> None:
        g = self._current(message.generation_id)
        if g is None:
            return
        self.generation = None
        self._store_answer(g, message.text, "complete", message.token_count)
        await self._end_answer("complete")

    async def on_generation_failed(self, message: Generation.Failed) -> None:
        g = self._current(message.generation_id)
        if g is None:
            return
        self.generation = None
        self.app.notify(f"The model failed: {describe_error(message.error)}",
                        severity="error", timeout=10)
        if message.partial:
            self._store_answer(g, message.partial, "cancelled", None)
            await self._end_answer("cancelled")
        else:
            await self._end_answer(None)

    async def action_stop(self) -> None:
        """Esc: stop the answer now and keep what has arrived."""
        g = self.generation
        if g is None:
            return
        g.cancelled.set()
        self.generation = None
        if g.text:
            self._store_answer(g, g.text, "cancelled", None)
            await self._end_answer("cancelled")
        else:
            await self._end_answer(None)

    def _store_answer(self, g: Generation, text: str, state: str, tokens: int | None) -> None:
        try:
            self.journal.add_message(g.conversation_id, "assistant", text,
                                     token_count=tokens, state=state,
                                     model_version=g.model_version)
        except Exception as e:
            self.app.notify(f"Could not save the answer: {describe_error(e)}",
                            severity="error")

    async def _end_answer(self, state: str | None) -> None:
        """Settle the answer's view: finished/stopped, or removed when it is empty."""
        view, self.answer_view = self.answer_view, None
        if view is not None:
            if state is None:
                await view.remove()
            else:
                await view.finish(state)
        self.set_answering(False)
        if self.conversation_id is not None:
            self.reload_messages()
            if view is not None and state is not None and self.messages:
                view.message_id = self.messages[-1].id
        self.refresh_all()

    async def action_regenerate(self) -> None:
        """Answer the last user turn again; the old answer stays, marked replaced."""
        if self.generation is not None:
            await self.action_stop()
        if not any(m.role == "user" for m in self.messages):
            self.app.notify("Nothing to regenerate yet.", severity="warning")
            return
        if self.app.engine_state == "failed":
            self.app.notify(f"No model to answer: {self.app.engine_error}.", severity="error")
            return
        last_user = max(i for i, m in enumerate(self.messages) if m.role == "user")
        if last_user < len(self.messages) - 1:
            for view in self.query_one(ChatLog).answers()[-1:]:
                view.mark("-superseded")
        await self.start_answer()
