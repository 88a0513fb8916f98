"""`pocketsleep demo`: a day, a night, and what the model remembers — in minutes.

Runs in a fresh temporary data home (the user's journal and experts are never
read or written; only config.toml's model and engine are read), removed at the end
unless `--keep DIR`: log the scripted day, ask about it closed-book, sleep, ask
again, and show the two sets of answers side by side with the gate's verdict.
"""

from __future__ import annotations

import shutil
import tempfile
import textwrap
from pathlib import Path

import click

from ..config import Config, Paths
from ..engines import ENGINES
from ..errors import InputError
from ..sleep.options import SleepOptions, parse_budget
from ..text import printable
from .context import CliContext
from .sleep import ProgressLine


@click.command("demo")
@click.option("--model", "-m", help="default, a .gguf file, an MLX folder or a hub id.")
@click.option("--engine", "-e", type=click.Choice(ENGINES), help="Which engine answers.")
@click.option("--budget", help="Stop the sleep's training in time to finish within this (e.g. 5m).")
@click.option("--keep", type=click.Path(path_type=Path),
              help="Run in this new (or empty) folder and keep it for inspection.")
@click.option("--verbose", "-v", is_flag=True, help="Print every sleep progress step.")
@click.pass_obj
def command(obj: CliContext, model: str | None, engine: str | None, budget: str | None,
            keep: Path | None, verbose: bool) -> None:
    """Watch the assistant learn a short scripted day while it sleeps.

    Logs three conversations in which "you" mention a few personal facts, asks
    about them closed-book, sleeps (a few minutes on a laptop CPU), and asks again.
    Your own journal is never touched.
    """
    # Everything that can be wrong with the input is found before any model loads.
    options = SleepOptions()
    if budget:
        options = options.but(budget_seconds=parse_budget(budget))
    home = _fresh_home(keep)
    config = Config(model=model or obj.config.model, engine=engine or obj.config.engine)
    try:
        run_demo(Paths(home).ensure(), config, options, verbose, kept=keep is not None)
    finally:
        if keep is None:
            shutil.rmtree(home, ignore_errors=True)


def _fresh_home(keep: Path | None) -> Path:
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="pocketsleep-demo-"))
    keep = keep.expanduser().resolve()
    if keep.exists() and not keep.is_dir():
        raise InputError(f"--keep {keep}: not a folder; name a new or empty folder")
    if keep.is_dir() and any(keep.iterdir()):
        raise InputError(f"--keep {keep}: the folder is not empty; the demo needs a fresh "
                         "data home, so name a new or empty folder")
    return keep


def run_demo(paths: Paths, config: Config, options: SleepOptions, verbose: bool,
             kept: bool) -> None:
    from .. import demo
    from ..journal import Journal
    from ..sleep import run_sleep

    say = click.echo
    say("pocketsleep demo: a day, a night, and what the model remembers.")
    say(f"Data home: {paths.home}" + ("" if kept else " (temporary, removed at the end)"))
    say(f"\n1. The day: {len(demo.CONVERSATIONS)} conversations, written to the journal.")
    with Journal.open(paths.journal) as journal:
        demo.log_day(journal)
    say(transcript(demo.CONVERSATIONS))

    say(f"2. Before sleep: {len(demo.QUESTIONS)} questions, closed-book "
        "(nothing of the day in the model's context).")
    before = demo.ask_all(paths, config)

    say("3. Sleep: the day's conversations are distilled into a new LoRA expert "
        "(minutes on a CPU).")
    progress = ProgressLine(verbose)
    try:
        report = run_sleep(paths, config, options, progress)
    finally:
        progress.done()

    say("4. After sleep: the same questions, closed-book.\n")
    after = demo.ask_all(paths, config)
    say(answer_table(demo.QUESTIONS, before, after))
    say(f"\nRecall: {sum(a.correct for a in before)}/{len(before)} before sleep, "
        f"{sum(a.correct for a in after)}/{len(after)} after.")
    say(verdict(report))
    if kept:
        say(f"\nKept {paths.home}. Look around with: "
            f"POCKETSLEEP_HOME={paths.home} pocketsleep status")


def transcript(conversations) -> str:
    lines = []
    for conversation in conversations:
        for m in conversation:
            who = "you" if m["role"] == "user" else "assistant"
            lines.append(f"   {who:>9}: {printable(m['content'])}")
        lines.append("")
    return "\n".join(lines)


def verdict(report) -> str:
    slept = f"Slept in {report.seconds:.0f} s."
    if report.status == "succeeded":
        return (f"{slept} The gate accepted tonight's expert (#{report.expert_id}): "
                "the answers after sleep come from the model wearing it.")
    reasons = "; ".join(report.reasons) or report.status
    return (f"{slept} The gate rejected tonight's expert ({reasons}), so the answers "
            "after sleep come from the unchanged model; the conversations stay pending "
            "for the next night.")


def answer_table(questions, before, after, width: int | None = None) -> str:
    """question | expected | before | after, each answer marked ✓ or ✗ and wrapped
    (never cut: the answer is the evidence) in columns that fit the terminal."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    q_w = max(len("question"), *(len(p.question) for p in questions))
    e_w = max(len("expected"), *(len(p.answers[0]) for p in questions))
    a_w = max(16, (width - q_w - e_w - 6) // 2)

    def row(*cells: list[str]) -> list[str]:
        widths = (q_w, e_w, a_w, a_w)
        height = max(len(c) for c in cells)
        return [("  ".join(f"{(c[i] if i < len(c) else ''):<{w}}" for c, w in zip(cells, widths))
                 ).rstrip() for i in range(height)]

    def cell(answer) -> list[str]:
        text = ("✓ " if answer.correct else "✗ ") + (printable(" ".join(answer.text.split()))
                                                     or "(nothing)")
        return textwrap.wrap(text, a_w, subsequent_indent="  ")

    lines = row(["question"], ["expected"], ["before sleep"], ["after sleep"])
    lines += row(["-" * q_w], ["-" * e_w], ["-" * a_w], ["-" * a_w])
    for probe, b, a in zip(questions, before, after):
        lines += row([probe.question], [probe.answers[0]], cell(b), cell(a))
    return "\n".join(lines)
