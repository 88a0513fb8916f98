"""What a scheduler runs each night: `pocketsleep nightly`, spelled out in absolute terms.

launchd, systemd and cron start the job with a bare environment (no PATH of the
user's shell, no virtual environment activated, cron's working folder is $HOME), so
the command names the installed `pocketsleep` script by its absolute path (its
shebang names the interpreter of this installation), or else this interpreter with
`-m pocketsleep` run from the data home, where no stray `pocketsleep` folder can
shadow the package. The settings that choose the data home travel with it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ENV_HOME, Paths

BASE_NAME = "pocketsleep-nightly"
# Environment the job needs to find the same data home and BLAS as the installer.
PASSED_ENV = (ENV_HOME, "POCKETSLEEP_BLAS")


@dataclass(frozen=True)
class ScheduledJob:
    name: str  # unit / agent label / crontab block name, one per data home
    argv: tuple[str, ...]  # absolute program, then its arguments
    env: dict[str, str] = field(default_factory=dict)
    workdir: Path = Path("/")
    output: Path = Path(os.devnull)  # the process's stdout and stderr, appended


def job_name(paths: Paths) -> str:
    """The default data home gets the plain name; any other home its own, so that
    two homes (a test one, say) never replace each other's schedule."""
    from platformdirs import user_data_dir

    default = Path(user_data_dir("pocketsleep", appauthor=False)).resolve()
    if paths.home == default:
        return BASE_NAME
    return f"{BASE_NAME}-{hashlib.sha256(str(paths.home).encode()).hexdigest()[:8]}"


def pocketsleep_argv() -> tuple[str, ...]:
    """How to start this installation of pocketsleep from anywhere."""
    script = Path(sysconfig.get_path("scripts")) / "pocketsleep"
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script),)
    return (str(Path(sys.executable).absolute()), "-m", "pocketsleep")


def passed_env(paths: Paths) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}
    if ENV_HOME in env:
        env[ENV_HOME] = str(paths.home)  # absolute: a relative one means nothing to cron
    return env


def scheduled_job(paths: Paths, *extra: str) -> ScheduledJob:
    paths.private_subdir(paths.logs)  # cron's `>>` needs the folder to exist
    return ScheduledJob(
        name=job_name(paths),
        argv=(*pocketsleep_argv(), "nightly", *extra),
        env=passed_env(paths),
        workdir=paths.home,
        output=paths.nightly_output,
    )
