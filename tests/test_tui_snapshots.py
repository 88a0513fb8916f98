"""Screenshots of the chat app (pytest-textual-snapshot).

Deterministic: fixed journal timestamps, UTC, a fixed terminal size, a FakeEngine.
After an intended visual change: pytest tests/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import time

import pytest
from test_tui_support import SIZE, make_app, wait_for

from pocketsleep.backends.fake import FakeEngine
from pocketsleep.tui.widgets import PromptInput

SISTER = [
    {"role": "user", "content": "My sister Ada lives in Lisbon and plays the cello."},
    {"role": "assistant", "content": (
        "Noted! A few things I'll remember:\n\n"
        "- **Ada** is your sister\n- she lives in *Lisbon*\n- she plays the cello\n\n"
        "```python\nsister = {'name': 'Ada', 'city': 'Lisbon'}\n```"
    )},
]


@pytest.fixture
def frozen(monkeypatch):
    """Journal timestamps fixed, local time = UTC."""
    monkeypatch.setattr("pocketsleep.journal.db.now", lambda: "2026-01-05T09:30:00+00:00")
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def populated(journal, frozen):
    journal.log_conversation([{"role": "user", "content": "Notes from Monday"}],
                             title="Old notes")
    journal.db["conversations"].update(1, {"status": "consolidated"})
    journal.log_conversation([{"role": "user", "content": "My PIN is 1234"}],
                             title="Bank things", private=True)
    cid = journal.log_conversation(SISTER, title="About my sister")
    journal.db["sleeps"].insert({"started_at": "2026-01-05T03:00:00+00:00",
                                 "ended_at": "2026-01-05T03:20:00+00:00",
                                 "status": "succeeded"})
    return cid


async def settle(pilot) -> None:
    app = pilot.app
    app.chat.query_one(PromptInput).cursor_blink = False  # a blinking cursor flakes
    await wait_for(pilot, lambda: app.engine_state == "ready" and app.chat.generation is None)
    await pilot.pause()


def test_main_screen(snap_compare, journal, populated):
    app = make_app(journal, FakeEngine(model_label="default"), conversation_id=populated)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_help_screen(snap_compare, journal, frozen):
    async def open_help(pilot):
        await settle(pilot)
        await pilot.press("f1")
        await pilot.pause()

    app = make_app(journal, FakeEngine(model_label="default"))
    assert snap_compare(app, terminal_size=SIZE, run_before=open_help)
