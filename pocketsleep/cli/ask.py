"""`pocketsleep ask QUESTION`: one closed-book answer, streamed.

No past conversation is put in the context: what the model answers here is what it
has learned into its weights. This is how memory is probed.
"""

from __future__ import annotations

import json
import sys
import time

import click

from ..backends.base import GenerationOptions
from ..engines import ENGINES, open_engine
from ..errors import InputError
from ..prompts import closed_book
from ..text import one_line, printable, require_utf8
from .context import CliContext


@click.command("ask")
@click.argument("words", nargs=-1, required=True, metavar="QUESTION")
@click.option("--model", "-m", help="default, a .gguf file, an MLX folder or a hub id.")
@click.option("--engine", "-e", type=click.Choice(ENGINES), help="Which engine answers.")
@click.option("--max-tokens", default=256, show_default=True, type=click.IntRange(1, 8192))
@click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(0, 2),
              help="0 answers greedily (the same answer every time).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
@click.option("--log", "log", is_flag=True, help="Record the exchange in the journal.")
@click.pass_obj
def command(obj: CliContext, words: tuple[str, ...], model: str | None, engine: str | None,
            max_tokens: int, temperature: float, as_json: bool, log: bool) -> None:
    """Ask the personal model QUESTION, with no past conversations in context.

    Quotes are optional: `pocketsleep ask What is my dog called` asks the same as
    `pocketsleep ask "What is my dog called"` (a shell may still need them around ?
    or an apostrophe)."""
    question = " ".join(words)
    require_utf8(question, "the question")
    if not question.strip():
        raise InputError('the question is empty; e.g. pocketsleep ask "What is my dog called?"')
    if model is None or model == obj.config.model:  # the personal model
        from .models import merge_at_start

        merge_at_start(obj)
    waiting = WaitingNote(enabled=not as_json and sys.stderr.isatty())
    waiting.show("loading the model…")
    started = time.perf_counter()
    try:
        llm = open_engine(obj.paths, obj.config, model=model, engine=engine)
    except BaseException:
        waiting.clear()  # the error's line starts on a clean line
        raise
    loaded = time.perf_counter()
    messages = closed_book(question)
    options = GenerationOptions(max_tokens=max_tokens, temperature=temperature)
    pieces: list[str] = []
    first_token_at = None
    try:
        for piece in llm.stream_chat(messages, options):
            if first_token_at is None:
                first_token_at = time.perf_counter()
                waiting.clear()
            pieces.append(piece)
            if not as_json:
                click.echo(printable(piece), nl=False)
    finally:
        waiting.clear()
        answer = "".join(pieces)
        if not as_json:
            click.echo()
    done = time.perf_counter()
    if log:
        journal = obj.journal
        cid = journal.start_conversation(title=one_line(question, 60), source="ask")
        journal.add_message(cid, "user", question)
        journal.add_message(cid, "assistant", answer, token_count=llm.count_tokens(answer),
                            model_version=llm.personal_version)
    if as_json:
        click.echo(json.dumps({
            "question": question,
            "answer": answer,
            "model": llm.model_label,
            "engine": llm.name,
            "load_seconds": round(loaded - started, 3),
            "first_token_seconds": round((first_token_at or done) - loaded, 3),
            "total_seconds": round(done - started, 3),
        }))
    llm.close()


class WaitingNote:
    """A note on the terminal while nothing is printed yet (loading a model can take
    half a minute on a busy machine), wiped before the answer starts. Only where
    stderr is a terminal: a pipe or a log gets the answer alone."""

    def __init__(self, enabled: bool):
        self.enabled, self.shown = enabled, ""

    def show(self, text: str) -> None:
        if self.enabled:
            self.clear()
            click.echo(text, err=True, nl=False)
            self.shown = text

    def clear(self) -> None:
        if self.shown:
            click.echo("\r" + " " * len(self.shown) + "\r", err=True, nl=False)
            self.shown = ""
