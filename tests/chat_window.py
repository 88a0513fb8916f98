"""One chat window in its own process: the real chat app (headless, driven by Pilot)
with a scripted engine, on the data home in $POCKETSLEEP_HOME. Used by the
concurrency tests to have several windows write to one journal at the same time.

    python tests/chat_window.py NAME TURNS SHARED_ID BARRIER WINDOWS

once its app is up, marks itself ready in folder BARRIER and waits until all
WINDOWS windows are (so that they start writing at once), then
sends TURNS messages "NAME:own:i" in a new conversation, then opens conversation
SHARED_ID and sends TURNS more, "NAME:shared:i". Each message is answered by the
engine ("You said: ..."), and the app stores both turns as it always does. Prints one
JSON line: the new conversation's id and every error the app showed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from test_tui_support import SIZE, make_app, ready, say

from pocketsleep.config import Paths
from pocketsleep.journal import Journal


async def main(name: str, turns: int, shared: int, barrier: Path, windows: int) -> dict:
    journal = Journal.open(Paths.resolve().ensure().journal)
    app = make_app(journal)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        (barrier / name).touch()
        while len(list(barrier.iterdir())) < windows:
            time.sleep(0.01)
        for i in range(turns):
            await say(pilot, f"{name}:own:{i}")
        own = app.chat.conversation_id
        assert await app.chat.open(shared)
        for i in range(turns):
            await say(pilot, f"{name}:shared:{i}")
    journal.close()
    return {"own": own, "errors": app.errors()}


if __name__ == "__main__":
    name, turns, shared, barrier, windows = sys.argv[1:6]
    print(json.dumps(asyncio.run(main(name, int(turns), int(shared), Path(barrier),
                                      int(windows)))))
