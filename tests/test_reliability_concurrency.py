"""Concurrency, with real processes: two sleeps started at the same moment, a chat
that keeps talking while a sleep runs, and two chat windows writing to one journal at
once. Nothing may be lost or duplicated, and what must run alone says so in one line.

(One-process versions live beside the features: test_sleep_job / test_sleep_cli
refuse a second sleep under a held lock, test_journal has two writer threads,
test_schedule_job the nightly job's waits for open chats, test_versions_rollback
merges against rollbacks.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("mlx.core")
pytest.importorskip("gguf")
pytest.importorskip("textual")

from reliability_support import TESTS, integrity, start, stopped, wait_until  # noqa: E402
from sleep_support import log_day, tiny_model  # noqa: E402
from test_tui_support import SIZE, async_test, make_app, ready, say  # noqa: E402

from pocketsleep.journal import Journal  # noqa: E402

REFUSED = "pocketsleep: error: another sleep is already running"


@pytest.fixture
def home(paths, tmp_path):
    gguf = tiny_model(tmp_path)
    paths.config_file.write_text(f'model = "{gguf}"\n')
    return paths


def test_two_sleeps_started_at_once_one_sleeps_the_other_is_refused(home, journal):
    day = log_day(journal)
    # Both are started together and told to freeze the moment they hold the sleep
    # lock: whichever gets it freezes holding it, so the other must be refused
    # however the two are scheduled.
    procs = [start(home.home, "sleep", "--no-merge", fault="sleep.locked:stop")
             for _ in range(2)]
    try:
        wait_until(lambda: sum(stopped(p) for p in procs) == 1
                   and sum(p.poll() is not None for p in procs) == 1)
        (holder,) = [p for p in procs if stopped(p)]
        (other,) = [p for p in procs if p is not holder]
        out, err = other.communicate()
        assert other.returncode == 1 and out == ""
        assert err.startswith(REFUSED) and err.count("\n") == 1  # one line, no traceback
        holder.send_signal(signal.SIGCONT)
        out, err = holder.communicate(timeout=120)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert holder.returncode == 0, err
    assert out.startswith("Slept in ")
    assert [(s.status) for s in journal.sleeps()] == ["succeeded"]  # the refused one wrote nothing
    assert {c.id: c.status for c in journal.conversations()} == dict.fromkeys(day, "consolidated")


@async_test
async def test_a_chat_keeps_talking_while_a_sleep_runs(home, journal):
    day = log_day(journal)
    # The sleep has read tonight's episode and recorded itself, then freezes: the
    # chat then writes while a sleep is certainly in progress.
    sleep = start(home.home, "sleep", fault="sleep.begun:stop")
    try:
        wait_until(lambda: stopped(sleep) or sleep.poll() is not None)
        assert stopped(sleep), sleep.communicate()
        app = make_app(journal)
        said = []
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            for i in range(3):  # a new conversation, while the sleep is frozen
                said.append(f"new chat {i}")
                await say(pilot, said[-1])
            new = app.chat.conversation_id
            assert await app.chat.open(day[0])  # and more in one the sleep is learning
            await say(pilot, "one more thing about Anna")
            sleep.send_signal(signal.SIGCONT)
            # ... and keeps talking while it trains, writes its expert and merges.
            i = 0
            while sleep.poll() is None:
                await say(pilot, f"during the night {i}")
                i += 1
            assert app.errors() == []
        out, err = sleep.communicate()
    finally:
        if sleep.poll() is None:
            sleep.kill()
    assert sleep.returncode == 0, err
    assert i > 0  # the chat really wrote while the sleep ran
    assert out.startswith("Slept in ") and "Merged 1 expert into v1" in out

    assert integrity(home.journal) == "ok"
    contents = [m.content for m in journal.messages(new)]
    assert contents == [t for s in said for t in (s, f"You said: {s}")]
    grown = [m.content for m in journal.messages(day[0])]
    assert grown[3:] == (["one more thing about Anna", "You said: one more thing about Anna"]
                         + [t for k in range(i) for t in (f"during the night {k}",
                                                          f"You said: during the night {k}")])
    # What the night did not read stays pending (learned next night, not never).
    status = {c.id: c.status for c in journal.conversations()}
    assert status == {day[0]: "pending", day[1]: "consolidated", new: "pending"}


def test_two_chat_windows_writing_at_once_lose_and_duplicate_nothing(home, journal, tmp_path):
    shared = journal.log_conversation([{"role": "user", "content": "shared start"}])
    journal.close()
    turns = 3
    barrier = tmp_path / "barrier"  # each window starts writing once both are up
    barrier.mkdir()
    env = dict(os.environ, POCKETSLEEP_HOME=str(home.home))
    windows = [subprocess.Popen(
        [sys.executable, str(TESTS / "chat_window.py"), name, str(turns), str(shared),
         str(barrier), "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("A", "B")]
    results = {}
    for name, w in zip("AB", windows):
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err[-3000:]
        results[name] = json.loads(out.splitlines()[-1])
        assert results[name]["errors"] == []  # e.g. "Could not save your message"

    assert integrity(home.journal) == "ok"
    with Journal.open(home.journal) as j:
        for name in "AB":
            own = [m.content for m in j.messages(results[name]["own"])]
            assert own == [t for i in range(turns)
                           for t in (f"{name}:own:{i}", f"You said: {name}:own:{i}")]
        together = [m.content for m in j.messages(shared)]
    assert together[0] == "shared start" and len(together) == 1 + 4 * turns
    for name in "AB":  # each window's turns, all there once, in its order
        mine = [t for t in together if t.startswith(name) or t.startswith(f"You said: {name}")]
        assert mine == [t for i in range(turns)
                        for t in (f"{name}:shared:{i}", f"You said: {name}:shared:{i}")]
    # The two really overlapped: their turns interleave in the shared conversation.
    authors = [t.removeprefix("You said: ")[0] for t in together[1:]]
    assert authors != sorted(authors)
