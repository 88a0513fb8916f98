"""What `schedule install` set up, kept in the data home (schedule.json).

It lets `schedule status`, the chat's status bar and the missed-night check know
the schedule without asking launchd, systemd or cron (crontab -l is a process per
call); `schedule status` still checks the system's side is really there.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass

from ..config import Paths
from ..errors import ConfigError, InputError
from ..files import write_file_atomic
from .timing import local, parse_at


@dataclass(frozen=True)
class InstalledSchedule:
    system: str  # "launchd" | "systemd" | "cron"
    at: str  # "HH:MM", local time
    name: str  # agent label / unit / crontab block name
    location: str  # where it was written, for the user
    command: list[str]  # what runs
    installed_at: str  # ISO, UTC

    @property
    def time_of_day(self) -> dt.time:
        return parse_at(self.at)

    @property
    def installed_local(self) -> dt.datetime:
        return local(self.installed_at)


def load(paths: Paths) -> InstalledSchedule | None:
    path = paths.schedule_file
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        schedule = InstalledSchedule(**raw)
        schedule.time_of_day, schedule.installed_local  # both must parse
        return schedule
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, UnicodeDecodeError, InputError) as e:
        raise ConfigError(f"{path} is damaged ({e}); run `pocketsleep schedule install` "
                          "again") from None


def save(paths: Paths, schedule: InstalledSchedule) -> None:
    paths.ensure()
    text = json.dumps(asdict(schedule), indent=2) + "\n"
    write_file_atomic(paths.schedule_file, text.encode())


def forget(paths: Paths) -> None:
    paths.schedule_file.unlink(missing_ok=True)
