"""Never a scheduled sleep while a chat is writing: one lock file, two ways to hold it.

Every open chat holds `chat.lock` *shared* (several chats can be open at once).
The nightly job sleeps only while it holds it *exclusively*: it waits for open
chats to close, and while it sleeps a chat that starts cannot take its share, so
it says so and takes it as soon as the sleep ends (a thread retries), so that a
chat left open overnight is still seen by the next night's job.

The chat's own "Sleep now" is a plain `pocketsleep sleep`, which never looks at
this lock: the user asked for it with the chat open. A flock lock belongs to one
open file, and Python's descriptors are not inherited by subprocesses, so a job
started from the chat does not hold the chat's share either.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from ..config import Paths

POLL_SECONDS = 30.0  # the job, waiting for chats to close
CHAT_RETRY_SECONDS = 5.0  # a chat, waiting for a scheduled sleep to end


def _open(paths: Paths) -> int:
    return os.open(paths.ensure().chat_lock, os.O_RDWR | os.O_CREAT, 0o600)


def _try(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextmanager
def chat_open(paths: Paths, retry_seconds: float | None = None) -> Iterator[bool]:
    """Held for as long as a chat is open. Yields False when a scheduled sleep is
    running right now; the share is then taken as soon as it ends."""
    fd = _open(paths)
    held = _try(fd, fcntl.LOCK_SH)
    closing = threading.Event()
    waiter = None
    if not held:
        # Polled, not a blocking flock: the chat may close first, and a thread
        # blocked on a descriptor that is then closed (or reused) is a hazard.
        period = CHAT_RETRY_SECONDS if retry_seconds is None else retry_seconds
        waiter = threading.Thread(target=_take_share_later, args=(fd, closing, period),
                                  daemon=True, name="chat-lock")
        waiter.start()
    try:
        yield held
    finally:
        closing.set()
        if waiter is not None:
            waiter.join()
        os.close(fd)  # releases the share


def _take_share_later(fd: int, closing: threading.Event, period: float) -> None:
    while not closing.wait(period):
        if _try(fd, fcntl.LOCK_SH):
            return


@contextmanager
def chats_closed(paths: Paths, wait_seconds: float, on_wait: Callable[[], None] = lambda: None,
                 poll_seconds: float | None = None) -> Iterator[bool]:
    """Exclusive hold for a scheduled sleep. Waits up to `wait_seconds` for open
    chats to close (calling `on_wait` once if it has to); yields whether it got it."""
    poll_seconds = POLL_SECONDS if poll_seconds is None else poll_seconds
    fd = _open(paths)
    deadline = time.monotonic() + wait_seconds
    try:
        waited = False
        while not _try(fd, fcntl.LOCK_EX):
            left = deadline - time.monotonic()
            if left <= 0:
                yield False
                return
            if not waited:
                on_wait()
                waited = True
            time.sleep(min(poll_seconds, left))
        yield True
    finally:
        os.close(fd)
