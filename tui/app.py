"""`pocketsleep chat`: the Textual app.

The app owns what outlives one screen: the journal (used on this thread only), the
engine (created by `engine_factory` in a thread worker, so the window appears at
once and says "loading model…" meanwhile), and background subcommand jobs.

When the chat talks to the personal model (`follows_personal_model`), a new version
made while it is open (a nightly merge, Sleep now, a forget, a rollback) is loaded
before the next answer, never during one.
"""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen

from pocketsleep.backends.base import Engine, GenerationOptions
from pocketsleep.config import Paths
from pocketsleep.journal import Journal
from pocketsleep.text import printable
from pocketsleep.versions.layout import personal_model_state

from .commands import chat_commands
from .info import personal_model_version
from .jobs import Job
from .screens import ChatScreen, ConfirmScreen, HelpScreen
from .screens.answering import describe_error
from .screens.help import key_rows
from .widgets import JobPanel

ENGINE_CLOSE_WAIT_S = 2.0
NOTIFY_MAX_CHARS = 600


class PocketsleepApp(App):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "pocketsleep"
    BINDINGS = [Binding("f1", "help", "Help")]

    class EngineReady(Message):
        def __init__(self, engine: Engine) -> None:
            super().__init__()
            self.engine = engine

    class EngineFailed(Message):
        def __init__(self, error: BaseException) -> None:
            super().__init__()
            self.error = error

    def __init__(
        self,
        journal: Journal,
        engine_factory: Callable[[], Engine],
        *,
        paths: Paths | None = None,
        conversation_id: int | None = None,
        options: GenerationOptions | None = None,
        notices: Iterable[str] = (),
        follows_personal_model: bool = False,
    ) -> None:
        super().__init__()
        self.journal = journal
        self.engine_factory = engine_factory
        self.paths = paths
        self.options = options or GenerationOptions(max_tokens=512)
        self.engine: Engine | None = None
        self.engine_state = "loading"  # loading | ready | failed
        self.engine_error: str | None = None
        self.engine_lock = threading.Lock()  # held while the engine computes
        self.follows_personal_model = follows_personal_model
        # What the personal model was made of when the engine was loaded, and its label.
        self.loaded_state: tuple | None = None
        self.loaded_label: str | None = None
        self.switching = False  # reloading because the personal model changed
        self.jobs: list[Job] = []
        self.chat = ChatScreen(conversation_id)
        self.notices = list(notices)  # told once the window is up (a missed night...)

    def on_mount(self) -> None:
        self.push_screen(self.chat)
        self.load_engine()
        for notice in self.notices:
            self.notify(notice, timeout=15)

    # -- the engine ----------------------------------------------------------------

    def engine_label(self) -> str:
        if self.engine is not None:
            return f"{self.engine.name} · {self.engine.model_label}"
        return "loading model…" if self.engine_state == "loading" else "no model"

    def load_engine(self, replacing: Engine | None = None) -> None:
        self.engine_state, self.engine_error = "loading", None
        if self.follows_personal_model:
            self.loaded_state = personal_model_state(self.journal)
            self.loaded_label = personal_model_version(self.journal, self.paths)
        if self.chat.is_mounted:
            self.chat.refresh_status()
        self.run_worker(partial(self._create_engine, replacing), name="load-engine",
                        group="engine", thread=True, exit_on_error=False)

    def engine_out_of_date(self) -> bool:
        """Has the personal model changed since the engine was loaded?"""
        return (self.follows_personal_model and self.engine is not None
                and personal_model_state(self.journal) != self.loaded_state)

    def reload_engine(self) -> None:
        """Load the personal model as it is now. Called between two answers only: the
        next one waits for the new engine (ChatScreen.engine_ready starts it)."""
        old, self.engine = self.engine, None
        self.switching = True
        self.load_engine(replacing=old)

    def _create_engine(self, replacing: Engine | None = None) -> None:
        """Thread body: free the engine being replaced, run the (slow) factory; report
        back by message."""
        if replacing is not None:
            # Freed first: two models in memory may not fit. An answer stopped a
            # moment ago lets go of the lock at its next piece.
            with self.engine_lock:
                _close_quietly(replacing)
        try:
            engine = self.engine_factory()
        except Exception as e:  # a missing model must not take the app down
            self.post_message(self.EngineFailed(e))
        else:
            self.post_message(self.EngineReady(engine))

    def on_pocketsleep_app_engine_ready(self, message: EngineReady) -> None:
        self.engine, self.engine_state = message.engine, "ready"
        if self.switching:
            self.switching = False
            self.notify(f"Your personal model changed: answering with {self.loaded_label}.")
        self.chat.refresh_status()
        self.chat.engine_ready()

    async def on_pocketsleep_app_engine_failed(self, message: EngineFailed) -> None:
        self.engine_state, self.switching = "failed", False
        self.engine_error = describe_error(message.error)
        self.notify(f"Could not load the model: {self.engine_error}", severity="error",
                    timeout=15)
        self.chat.refresh_status()
        await self.chat.engine_failed()

    def _close_engine(self) -> None:
        # Never free a model another thread is still computing with.
        if self.engine is not None and self.engine_lock.acquire(timeout=ENGINE_CLOSE_WAIT_S):
            try:
                _close_quietly(self.engine)
            finally:
                self.engine_lock.release()
        self.engine = None

    # -- background subcommands ----------------------------------------------------

    async def run_subcommand(self, title: str, *args: str,
                             argv_prefix: list[str] | None = None,
                             outcome_from: str | None = None) -> Job:
        """Run `pocketsleep <args>` in its own process, its progress shown in the chat;
        `outcome_from`: see Job."""
        for job in self.jobs:
            if job.running and job.args == list(args):
                self.notify(f"{job.title} is already running.", severity="warning")
                return job
        job = Job(title, list(args), self.paths, argv_prefix, outcome_from)
        self.jobs.append(job)
        view = await self.chat.query_one(JobPanel).add(job)
        self.run_worker(partial(job.run, view.post_message), name=f"job-{job.id}",
                        group="jobs", thread=True, exit_on_error=False)
        return job

    def on_job_finished(self, message: Job.Finished) -> None:
        job = next((j for j in self.jobs if j.id == message.job_id), None)
        title = job.title if job else "Job"
        outcome = job.outcome() if job else None
        if message.returncode == 0:
            self.notify(outcome or f"{title} finished.", timeout=15 if outcome else None)
        else:
            self.notify(f"{title} failed (exit {message.returncode}): {message.last_line}",
                        severity="error", timeout=15)
        self.jobs = [j for j in self.jobs if j.running]
        # A sleep or a forget changes statuses, the last-sleep line and the personal
        # model (loaded again before the next answer).
        self.chat.refresh_all()

    # -- palette, help, quit ---------------------------------------------------------

    def notify(self, message: str, *, title: str = "", severity="information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Notifications often quote untrusted text (engine errors, job output):
        no markup, control characters made visible, and never more than a screenful."""
        text = printable(str(message))
        if len(text) > NOTIFY_MAX_CHARS:
            text = text[:NOTIFY_MAX_CHARS] + "…"
        super().notify(text, title=title, severity=severity, timeout=timeout, markup=markup)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        if isinstance(screen, ChatScreen):
            yield from chat_commands(self, screen)
        yield from super().get_system_commands(screen)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            rows = key_rows(ChatScreen.BINDINGS, self.get_key_display)
            self.push_screen(HelpScreen(rows))

    async def action_quit(self) -> None:
        running = [j for j in self.jobs if j.running]
        if not running:
            await self._quit()
            return
        names = ", ".join(j.title for j in running)

        async def done(yes: bool | None) -> None:
            if yes:
                await self._quit()

        self.push_screen(ConfirmScreen(f"{names} is still running. Quit and stop it?",
                                       yes="Quit"), done)

    async def _quit(self) -> None:
        for job in self.jobs:
            job.stop()
        if self.chat.is_mounted:
            await self.chat.action_stop()  # keep the partial answer
        self.exit()

    def on_unmount(self) -> None:
        for job in self.jobs:
            job.stop()
        self._close_engine()


def _close_quietly(engine: Engine) -> None:
    try:
        engine.close()
    except Exception:  # closing must never take the app down
        pass
