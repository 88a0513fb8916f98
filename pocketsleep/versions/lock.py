"""One merge, switch or rollback at a time (a nightly merge and a chat's catch-up,
say): an exclusive lock on `Paths.merge_lock`, never waited for."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager

from ..config import Paths
from ..errors import Busy


@contextmanager
def merge_lock(paths: Paths):
    fd = os.open(paths.ensure().merge_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Busy("another merge or rollback of your personal model is running; "
                   "try again when it has finished") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
