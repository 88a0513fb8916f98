"""Making untrusted text safe to print in a terminal."""

from __future__ import annotations

import re

from .errors import InputError

# C0 controls except tab and newline, DEL, and C1 controls: an ESC or CSI byte in a
# stored message must not move the cursor, change colours or retitle the terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def counted(n: int, noun: str) -> str:
    """'1 message', '2 messages'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def printable(text: str) -> str:
    """Show control characters as visible escapes (`\\x1b`), keep everything else."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def one_line(text: str, width: int) -> str:
    """First line of `text`, made printable and cut to `width` characters."""
    line = printable(" ".join(text.split()))
    return line if len(line) <= width else line[: width - 1] + "…"


def require_utf8(text: str | None, what: str) -> str | None:
    """`text` if it can be stored and shown as UTF-8; otherwise one InputError line.

    Python lets invalid text in as lone surrogates: bytes that are not UTF-8 in a
    command-line argument (`--title $'\\xff'`), a "\\ud83d" escape in JSON. SQLite and
    the terminal cannot take them (they were a UnicodeEncodeError traceback)."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        code = ord(text[e.start])
        kind = "a byte that is not UTF-8" if 0xDC80 <= code <= 0xDCFF else "a lone surrogate"
        raise InputError(f"{what} is not valid text: character {e.start + 1} is {kind} "
                         f"(\\u{code:04x}); give it as UTF-8") from None
    return text
