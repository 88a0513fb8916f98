"""Small file-safety helpers shared by everything that writes or reads user files."""

from __future__ import annotations

import fcntl
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError


def fsync_folder(folder: Path) -> None:
    """Make a folder's entries (a rename into it, a new file) durable."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def write_file_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` all at once: written beside it, flushed, renamed.

    A crash leaves the old file or the new one, never half of either.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # O_CREAT's mode is filtered by the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def temp_prefix(name: str) -> str:
    """The start of a temporary sibling's name for `name`, carrying the writer's pid:
    `.model.gguf.4242-` (tempfile adds random characters and the suffix)."""
    return f".{name}.{os.getpid()}-"


def left_by_dead_writer(temp: Path, name: str) -> bool:
    """Was `temp` (named by temp_prefix(name)) left by a process that no longer runs
    (killed mid-write)? Then it can go at once; a live writer's is never touched."""
    head = temp.name[len(name) + 2:].split("-", 1)[0] if temp.name.startswith(f".{name}.") else ""
    if not head.isdigit():
        return False
    try:
        os.kill(int(head), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, under another user
        return False
    return False


def fsync_tree(folder: Path) -> None:
    """Flush every file in `folder` and the folder itself, before it is renamed into
    place: a crash must not promote a folder whose files are still in the page cache."""
    for f in folder.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_folder(folder)


def read_json(path: str | Path, what: str = "file") -> object:
    """Parse a JSON file given on the command line ('-' reads standard input);
    every problem is one InputError line naming the file."""
    name = "standard input" if str(path) == "-" else str(path)
    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{name}: no such {what}") from None
    except IsADirectoryError:
        raise InputError(f"{name} is a folder; give a JSON {what}") from None
    except UnicodeDecodeError:
        raise InputError(f"{name} is not UTF-8 text; save it as UTF-8 JSON") from None
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            f"{name} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


@contextmanager
def exclusive_lock(path: Path, busy: str):
    """Hold an exclusive lock on `path` (created private) while the block runs, never
    waiting: a second holder gets `Busy(busy)`. The file holds the holder's pid."""
    from .errors import Busy

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Busy(busy) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
