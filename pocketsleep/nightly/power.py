"""Is the machine running on battery? Asked the way each OS answers it.

Linux: /sys/class/power_supply (a mains or USB supply online means no; a system
battery discharging, or every mains supply offline, means yes). macOS:
`pmset -g batt` says "Now drawing from 'Battery Power'" or "'AC Power'". When the
OS says nothing (a desktop, a container, an unknown system) the answer is no: the
nightly job must not skip forever on a machine that cannot tell.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

POWER_SUPPLY = Path("/sys/class/power_supply")


def _read(folder: Path, name: str) -> str:
    try:
        return (folder / name).read_text().strip()
    except OSError:
        return ""


def linux_on_battery(root: Path = POWER_SUPPLY) -> bool:
    try:
        supplies = list(root.iterdir())
    except OSError:
        return False
    # A wireless mouse's battery (scope "Device") says nothing about the machine.
    supplies = [p for p in supplies if _read(p, "scope") != "Device"]
    batteries = [p for p in supplies if _read(p, "type") == "Battery"]
    adapters = [p for p in supplies if _read(p, "type") not in ("Battery", "")]
    if not batteries:
        return False
    if any(_read(p, "online") == "1" for p in adapters):
        return False
    if any(_read(p, "status") == "Discharging" for p in batteries):
        return True
    return bool(adapters)  # adapters known, none online: running on the battery


def pmset_on_battery(output: str) -> bool:
    """`pmset -g batt`'s first line names the power source."""
    return "'Battery Power'" in output.splitlines()[0] if output.strip() else False


def on_battery() -> bool:
    if sys.platform.startswith("linux"):
        return linux_on_battery()
    if sys.platform == "darwin":
        try:
            done = subprocess.run(["pmset", "-g", "batt"], capture_output=True, text=True,
                                  timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0 and pmset_on_battery(done.stdout)
    return False
