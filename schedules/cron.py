"""cron: one entry in a managed block of the user's crontab.

The block is a begin line, the entry, an end line. Install replaces the block in
place (or appends it); remove deletes exactly those lines. Every other byte of the
user's crontab is written back as it was read: the text is handled with
`surrogateescape`, so even bytes that are not UTF-8 survive.

cron cannot run a night it missed (the machine was off at 03:00); the nightly job
is caught up at the next pocketsleep start instead (`pocketsleep.nightly.catchup`).
"""

from __future__ import annotations

import datetime as dt
import shlex
import shutil

from ..errors import ScheduleError
from . import tools
from .job import ScheduledJob

SYSTEM = "cron"
CATCHES_UP_ITSELF = False
_ENCODING = ("utf-8", "surrogateescape")


def usable() -> str | None:
    """None when crontab can be used here, else why not."""
    if shutil.which("crontab") is None:
        return ("`crontab` is not installed; install cron (Debian/Ubuntu: "
                "sudo apt-get install cron) or choose another --using")
    return None


def begin_line(name: str) -> str:
    return f"# >>> {name}: managed by pocketsleep; `pocketsleep schedule remove` deletes it >>>"


def end_line(name: str) -> str:
    return f"# <<< {name} <<<"


def _cron_quote(word: str) -> str:
    # cron turns an unescaped % into a newline; the shell then sees the rest.
    if "\n" in word:
        raise ScheduleError(f"cannot put a path with a line break in a crontab: {word!r}")
    return shlex.quote(word).replace("%", "\\%")


def entry(job: ScheduledJob, at: dt.time) -> str:
    """The crontab line: cd to the data home, the environment, the job, output appended."""
    env = " ".join(f"{k}={_cron_quote(v)}" for k, v in job.env.items())
    command = " ".join(_cron_quote(a) for a in job.argv)
    return (f"{at.minute} {at.hour} * * * cd {_cron_quote(str(job.workdir))} && "
            + (f"{env} " if env else "")
            + f"exec {command} >> {_cron_quote(str(job.output))} 2>&1")


def block(job: ScheduledJob, at: dt.time) -> list[str]:
    return [begin_line(job.name), entry(job, at), end_line(job.name)]


def _find(lines: list[str], name: str) -> tuple[int, int] | None:
    """(first, last) index of the named block, or None.

    A block someone half-edited (a begin line without its end, two of them) is
    refused rather than guessed at: guessing wrong would delete the user's lines.
    """
    begins = [i for i, line in enumerate(lines) if line == begin_line(name)]
    ends = [i for i, line in enumerate(lines) if line == end_line(name)]
    if not begins and not ends:
        return None
    if len(begins) == 1 and len(ends) == 1 and begins[0] < ends[0]:
        return begins[0], ends[0]
    raise ScheduleError(
        f"your crontab's '{name}' block is damaged (its begin and end lines do not "
        "match); fix or delete those lines with `crontab -e`, then try again")


def with_block(crontab: str, new_block: list[str], name: str) -> str:
    """`crontab` with the named block replaced in place, or appended."""
    lines = crontab.split("\n")
    found = _find(lines, name)
    if found:
        first, last = found
        lines[first:last + 1] = new_block
        return "\n".join(lines)
    if crontab and not crontab.endswith("\n"):
        crontab += "\n"  # cron needs each line ended; crontab(1) refuses a file without
    return crontab + "\n".join(new_block) + "\n"


def without_block(crontab: str, name: str) -> str:
    lines = crontab.split("\n")
    found = _find(lines, name)
    if not found:
        return crontab
    first, last = found
    del lines[first:last + 1]
    return "\n".join(lines)


def read_crontab() -> str:
    done = tools.run(["crontab", "-l"])
    if done.returncode != 0:
        if b"no crontab" in done.stderr.lower():
            return ""
        raise ScheduleError(f"cannot read your crontab: {tools.said(done)}")
    return done.stdout.decode(*_ENCODING)


def write_crontab(text: str) -> None:
    if text == "":
        # Nothing but our block was there: leave no crontab rather than an empty one.
        done = tools.run(["crontab", "-r"])
        if done.returncode != 0 and b"no crontab" not in done.stderr.lower():
            raise ScheduleError(f"cannot remove your empty crontab: {tools.said(done)}")
        return
    tools.check(["crontab", "-"], input=text.encode(*_ENCODING))


def install(job: ScheduledJob, at: dt.time) -> str:
    reason = usable()
    if reason:
        raise ScheduleError(reason)
    write_crontab(with_block(read_crontab(), block(job, at), job.name))
    return f"your crontab, in the block marked '{job.name}'"


def is_installed(name: str) -> bool:
    return usable() is None and _find(read_crontab().split("\n"), name) is not None


def remove(name: str) -> bool:
    if usable() is not None:
        return False
    before = read_crontab()
    after = without_block(before, name)
    if after == before:
        return False
    write_crontab(after)
    return True
