"""`pocketsleep log --file CONV.json`: import a conversation into the journal."""

from __future__ import annotations

import datetime as dt

import click

from ..errors import InputError
from ..files import read_json
from ..journal.db import ROLES
from ..text import counted, require_utf8
from .context import CliContext


def read_conversation(path: str) -> list[dict]:
    """Read and validate a JSON list of {role, content}; nothing is written here."""
    name = "standard input" if path == "-" else path
    try:
        data = read_json(path)
    except InputError as e:
        if "not valid JSON" not in str(e):
            raise
        raise InputError(f'{e}; expected a list like [{{"role": "user", "content": "..."}}]') from None
    if not isinstance(data, list) or not data:
        raise InputError(
            f'{name}: expected a non-empty JSON list of {{"role", "content"}} objects'
        )
    for i, m in enumerate(data, 1):
        if not isinstance(m, dict):
            raise InputError(f"{name}: message {i} is not an object with role and content")
        if m.get("role") not in ROLES:
            raise InputError(
                f"{name}: message {i} has role {m.get('role')!r}; use one of {', '.join(ROLES)}"
            )
        if not isinstance(m.get("content"), str):
            raise InputError(f"{name}: message {i} has no text 'content'")
        if not m["content"].strip():
            raise InputError(f"{name}: message {i} is empty; leave it out or give it text")
        require_utf8(m["content"], f"{name}: message {i}")
    return [{"role": m["role"], "content": m["content"]} for m in data]


def held_on(day: str) -> str:
    """'2026-03-02' -> the journal's timestamp for noon UTC that day."""
    try:
        date = dt.date.fromisoformat(day)
    except ValueError:
        raise InputError(f"--date {day!r}: expected a day as YYYY-MM-DD, e.g. 2026-03-02") from None
    if date > dt.date.today() + dt.timedelta(days=1):
        raise InputError(f"--date {day}: that day has not come yet")
    return f"{date.isoformat()}T12:00:00+00:00"


@click.command("log")
@click.option("--file", "-f", "file", required=True, metavar="CONV.json",
              help='A JSON list of {"role", "content"} messages; - reads standard input.')
@click.option("--title", help="A title for the conversation.")
@click.option("--private", is_flag=True, help="Never learn from this conversation.")
@click.option("--date", "day", metavar="YYYY-MM-DD",
              help="The day it was held (default: today); the sleep dates what it learns by it.")
@click.pass_obj
def command(obj: CliContext, file: str, title: str | None, private: bool,
            day: str | None) -> None:
    """Import a conversation, as if it had been chatted today (or on --date)."""
    at = held_on(day) if day else None
    messages = read_conversation(file)
    cid = obj.journal.log_conversation(messages, title=title, private=private, at=at)
    note = " (private: never learned from)" if private else ""
    click.echo(f"Logged conversation {cid} ({counted(len(messages), 'message')}){note}.")
