"""Shared pieces of the schedule tests: the real crontab, saved and put back."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def crontab_bytes() -> bytes:
    done = subprocess.run(["crontab", "-l"], capture_output=True)
    return done.stdout if done.returncode == 0 else b""


def set_crontab(text: bytes) -> None:
    subprocess.run(["crontab", "-"], input=text, check=True, capture_output=True)


@pytest.fixture
def real_crontab():
    """The user's real crontab, saved before and put back after, whatever happens."""
    if shutil.which("crontab") is None:
        pytest.skip("the `crontab` program is not installed (Debian: apt-get install cron)")
    saved = subprocess.run(["crontab", "-l"], capture_output=True)
    try:
        yield
    finally:
        if saved.returncode == 0:
            set_crontab(saved.stdout)
        else:
            subprocess.run(["crontab", "-r"], capture_output=True)
