"""`pocketsleep eval --suite FILE.json`: the memory benchmark of DESIGN.md §5.

Every method runs in a fresh temporary data home of its own; the user's data home
is only read (for config.toml's model and engine), never written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..config import Config
from ..engines import ENGINES
from ..errors import InputError
from ..eval.harness import run_eval
from ..eval.methods import METHODS, parse_methods
from ..eval.report import check_plotting, format_table, write_plot
from ..eval.result_file import read_result, write_result
from ..eval.suite import load_suite
from .context import CliContext


@click.command("eval")
@click.option("--suite", "suite_file", required=True, type=click.Path(path_type=Path),
              help="A memory suite (JSON), e.g. dev-week.json.")
@click.option("--methods", "methods_spec", default="none,icl", show_default=True,
              help=f"Comma-separated methods to compare (known: {', '.join(METHODS)}).")
@click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="Write the result as JSON to this file, again after every night "
                   "('-': standard output, at the end).")
@click.option("--days", type=click.IntRange(1), help="Use only the first N days.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seeds numpy, MLX and random.")
@click.option("--model", "-m", help="default, a .gguf file, an MLX folder or a hub id.")
@click.option("--engine", "-e", type=click.Choice(ENGINES), help="Which engine answers.")
@click.option("--max-tokens", default=32, show_default=True, type=click.IntRange(1, 1024),
              help="Longest answer to a probe (greedy).")
@click.option("--plot", "plot_out", type=click.Path(path_type=Path, dir_okay=False),
              help="Also draw recall per night and retention heatmaps into this PNG.")
@click.option("--resume", "resume_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Keep the methods this earlier --json file finished (same suite, model, "
                   "engine and seed); run the rest. Writes back to it unless --json is given.")
@click.pass_obj
def command(obj: CliContext, suite_file: Path, methods_spec: str, json_out: Path | None,
            days: int | None, seed: int, model: str | None, engine: str | None,
            max_tokens: int, plot_out: Path | None, resume_file: Path | None) -> None:
    """Teach a memory suite day by day and measure what each method remembers.

    For each method, each day's conversations are logged, the method's night runs,
    then every probe so far is asked closed-book (greedy). Prints a table; --json
    writes the full result (again after every night, with "complete": false until
    the end, so a stopped run keeps what it finished), --plot a figure.
    """
    # Everything that can be wrong with the input is found before any model loads.
    methods = parse_methods(methods_spec)
    suite = load_suite(suite_file).first(days)
    earlier = read_result(resume_file) if resume_file is not None else None
    json_out = json_out or resume_file
    for out in (json_out, plot_out):
        if out is not None and str(out) != "-" and not out.resolve().parent.is_dir():
            raise InputError(f"cannot write {out}: no folder {out.resolve().parent}")
    if plot_out is not None:
        check_plotting()
    config = Config(model=model or obj.config.model, engine=engine or obj.config.engine)

    to_stdout = json_out is not None and str(json_out) == "-"
    to_file = json_out is not None and not to_stdout
    started = time.perf_counter()
    result = run_eval(
        suite, methods, config=config, seed=seed, max_tokens=max_tokens,
        progress=lambda line: click.echo(f"eval: {line}", err=True),
        on_update=(lambda so_far: write_result(json_out, so_far)) if to_file else None,
        resume_from=earlier,
    )
    click.echo(f"eval: done in {time.perf_counter() - started:.1f} s", err=True)

    click.echo(format_table(result), err=to_stdout)
    if to_stdout:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    if plot_out is not None:
        write_plot(result, plot_out)
        click.echo(f"eval: wrote {plot_out}", err=True)
