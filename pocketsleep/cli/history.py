"""`pocketsleep history [ID]`: list conversations, or show one."""

from __future__ import annotations

import dataclasses
import json

import click

from ..text import one_line, printable
from .context import CliContext


@click.command("history")
@click.argument("conversation_id", type=int, required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def command(obj: CliContext, conversation_id: int | None, as_json: bool) -> None:
    """List past conversations, or show conversation CONVERSATION_ID."""
    journal = obj.journal
    if conversation_id is None:
        conversations = journal.conversations()
        if as_json:
            click.echo(json.dumps([dataclasses.asdict(c) for c in conversations], indent=2))
            return
        if not conversations:
            click.echo("No conversations yet. Start one with `pocketsleep chat`"
                       " or import one with `pocketsleep log --file CONV.json`.")
            return
        click.echo(f"{'ID':>4}  {'STARTED':<16}  {'MSGS':>4}  {'STATUS':<12}  TITLE")
        for c in conversations:
            # A private conversation is never learned: "pending" would say it waits
            # for tonight's sleep.
            status = "private" if c.private and c.status == "pending" else c.status
            mark = " [private]" if c.private and status != "private" else ""
            click.echo(
                f"{c.id:>4}  {c.started_at[:16].replace('T', ' '):<16}  {c.message_count:>4}"
                f"  {status:<12}  {one_line(c.display_title, 50)}{mark}"
            )
        return

    conversation = journal.conversation(conversation_id)
    messages = journal.messages(conversation_id)
    if as_json:
        click.echo(json.dumps({
            "conversation": dataclasses.asdict(conversation),
            "messages": [dataclasses.asdict(m) for m in messages],
        }, indent=2))
        return
    flags = [conversation.status] + (["private"] if conversation.private else [])
    click.echo(f"# {one_line(conversation.display_title, 70)}  ({', '.join(flags)},"
               f" started {conversation.started_at})")
    if conversation.status == "forgotten":
        click.echo("(forgotten: its messages were deleted)")
    for m in messages:
        suffix = " [cancelled]" if m.state == "cancelled" else ""
        click.echo(f"\n{m.role}{suffix}:")
        click.echo(printable(m.content))
