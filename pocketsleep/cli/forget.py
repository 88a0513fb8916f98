"""`pocketsleep forget ID`: delete a conversation for good, from the weights too."""

from __future__ import annotations

import click

from ..text import counted
from .context import CliContext
from .sleep import ProgressLine


@click.command("forget")
@click.argument("conversation_id", type=int)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--verbose", "-v", is_flag=True, help="Print every progress step.")
@click.pass_obj
def command(obj: CliContext, conversation_id: int, yes: bool, verbose: bool) -> None:
    """Forget conversation CONVERSATION_ID: its text and what was learned from it.

    The text is overwritten in the journal file, not only hidden, with the stored
    questions derived from it. Experts trained on it are rebuilt from their other
    conversations (minutes each on a CPU): those that learned it, and later nights'
    that held its stored questions in place. Versions of the personal model that
    held them are deleted, the model is merged again, and the questions about it
    are asked to check they are no longer answered.
    """
    from ..forgetting import forget_conversation, learned_from, rebuild_note

    journal = obj.journal
    journal.check_intact()  # never delete from (or write into) a damaged journal
    conversation = journal.conversation(conversation_id)
    learned = learned_from(journal, conversation_id)
    if conversation.status == "forgotten" and not learned:
        click.echo(f"Conversation {conversation_id} is already forgotten.")
        return
    if not yes:
        question = (f"Forget conversation {conversation_id} "
                    f"({counted(conversation.message_count, 'message')})?")
        if rebuild_note(learned):
            question += " " + rebuild_note(learned)
        click.confirm(question, abort=True)
    progress = ProgressLine(verbose)
    try:
        report = forget_conversation(obj.paths, obj.config, conversation_id, progress)
    finally:
        progress.done()
    click.echo(report.summary())
