"""`pocketsleep chat`: talk to the assistant in a terminal app (Textual)."""

from __future__ import annotations

import click

from ..config import ENGINES
from ..errors import JournalError, PocketsleepError, require
from ..nightly.chat_lock import chat_open
from .context import CliContext
from .nightly import catch_up_at_start


@click.command("chat")
@click.option("--model", "-m", metavar="M",
              help="Model to talk to (default: the `model` setting): 'default', a folder,"
                   " a .gguf file or a Hugging Face repo id.")
@click.option("--engine", "-e", type=click.Choice(ENGINES),
              help="Engine to answer with (default: the `engine` setting).")
@click.option("--conversation", "-c", "conversation_id", type=int, metavar="ID",
              help="Open conversation ID (from `pocketsleep history`) to continue it.")
@click.pass_obj
def command(obj: CliContext, model: str | None, engine: str | None,
            conversation_id: int | None) -> None:
    """Chat with the assistant; every turn is saved to the journal.

    Keys: Enter sends, Esc stops an answer, Ctrl+P opens the command palette,
    F1 lists every key.
    """
    require("textual", "chat", "pocketsleep chat")
    from ..tui.app import PocketsleepApp

    paths = obj.paths.ensure()
    config = obj.config
    journal = obj.journal
    journal.check_intact()  # a damaged page would stop the app inside its screen
    if conversation_id is not None:
        if journal.conversation(conversation_id).status == "forgotten":
            raise JournalError(f"conversation {conversation_id} was forgotten")

    def engine_factory():
        # Imported here: loading a model is slow and happens in the app's worker.
        from ..engines import open_engine

        return open_engine(paths, config, model=model, engine=engine)

    personal = model is None or model == config.model
    if personal:
        from .models import merge_at_start

        merge_at_start(obj)  # a missed morning merge, before the app takes the screen
    # While open, the chat holds its share of the chat lock: the scheduled sleep
    # waits for it to close (its own "Sleep now" does not).
    with chat_open(paths) as present:
        # Only now: a missed night's job started before the chat held its share could
        # take the lock first and sleep with the chat open.
        catch_up_at_start(obj, "chat")
        notices = list(obj.notices)
        if not present:
            notices.append("The nightly sleep is running: it learns from your conversations "
                           "as they were when it started.")
        app = PocketsleepApp(journal, engine_factory, paths=paths,
                             conversation_id=conversation_id, notices=notices,
                             follows_personal_model=personal)
        app.run()
    if app.return_code:  # Textual has shown the error; the exit status must say so too
        raise PocketsleepError("the chat stopped on an error (shown above); what you had "
                               "sent is in the journal (pocketsleep history)")
