"""Making untrusted text safe to print in a terminal."""

from __future__ import annotations

import re

# C0 controls except tab and newline, DEL, and C1 controls: an ESC or CSI byte in a
# stored message must not move the cursor, change colours or retitle the terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Show control characters as visible escapes (`\\x1b`), keep everything else."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def one_line(text: str, width: int) -> str:
    """First line of `text`, made printable and cut to `width` characters."""
    line = printable(" ".join(text.split()))
    return line if len(line) <= width else line[: width - 1] + "…"
