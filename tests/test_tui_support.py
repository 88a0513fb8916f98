"""Helpers shared by the chat app's tests (no tests here).

Every test builds the app directly with a FakeEngine factory and drives it with
Pilot against the temporary data home that conftest sets up.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Callable

from pocketsleep.backends.fake import FakeEngine
from pocketsleep.journal import Journal
from pocketsleep.tui.app import PocketsleepApp

SIZE = (120, 36)


def async_test(fn):
    """Run an async test with asyncio.run (no pytest async plugin is a dependency)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return run


class RecordingApp(PocketsleepApp):
    """The real app, remembering every notification as (severity, text)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.notes: list[tuple[str, str]] = []

    def notify(self, message, *, severity="information", **kwargs) -> None:
        self.notes.append((severity, str(message)))
        super().notify(message, severity=severity, **kwargs)

    def errors(self) -> list[str]:
        return [text for severity, text in self.notes if severity == "error"]


def make_app(journal, engine: FakeEngine | None = None, factory: Callable | None = None,
             **kwargs) -> RecordingApp:
    engine = engine if engine is not None else FakeEngine()
    return RecordingApp(journal, factory or (lambda: engine), **kwargs)


async def wait_for(pilot, predicate: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        await pilot.pause(0.01)


async def ready(pilot) -> None:
    """Wait until the engine has loaded (or failed) and no answer is being written."""
    app = pilot.app
    await wait_for(pilot, lambda: app.engine_state != "loading" and app.chat.generation is None)
    await pilot.pause()


async def say(pilot, text: str) -> None:
    """Put `text` in the prompt, press Enter, wait for the whole answer."""
    prompt = pilot.app.chat.query_one("#prompt")
    prompt.focus()
    prompt.value = text
    await pilot.press("enter")
    await pilot.pause()
    await ready(pilot)


def screen_text(app) -> str:
    """What the terminal shows right now, as plain text."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def turns(prompt: list[dict]) -> list[dict]:
    """A prompt the engine got, without the system prompt in front."""
    return [m for m in prompt if m["role"] != "system"]


def rows(journal, conversation_id: int) -> list[tuple[str, str, str]]:
    return [(m.role, m.content, m.state) for m in journal.messages(conversation_id)]


class VersionEngine(FakeEngine):
    """A scripted engine that, as open_engine does, says which version it loaded."""

    def __init__(self, number: int, version: int | None, delay: float = 0.0):
        super().__init__(model_label=f"engine {number}", delay=delay)
        self.personal_version = version
        self.closed = False

    def close(self) -> None:
        self.closed = True


def engines_from(paths, delay: float = 0.0):
    """An engine factory reading the current version from the journal, as open_engine
    does (its own connection: it runs in a worker thread); and what it made."""
    made: list[VersionEngine] = []

    def factory() -> VersionEngine:
        with Journal.open(paths.journal) as journal:
            current = journal.current_version()
        made.append(VersionEngine(len(made) + 1, current.id if current else None, delay))
        return made[-1]

    return factory, made
