"""`pocketsleep forget ID`: delete a conversation for good."""

from __future__ import annotations

import click

from .context import CliContext


@click.command("forget")
@click.argument("conversation_id", type=int)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def command(obj: CliContext, conversation_id: int, yes: bool) -> None:
    """Delete conversation CONVERSATION_ID's messages from the journal.

    The text is overwritten in the journal file, not only hidden.
    """
    journal = obj.journal
    conversation = journal.conversation(conversation_id)
    if conversation.status == "forgotten":
        click.echo(f"Conversation {conversation_id} is already forgotten.")
        return
    if not yes:
        click.confirm(
            f"Forget conversation {conversation_id} ({conversation.message_count} messages)?",
            abort=True,
        )
    removed = journal.forget(conversation_id)
    click.echo(f"Forgot conversation {conversation_id} ({removed} messages deleted).")
