"""`pocketsleep models`: the versions of your personal model, merge and rollback.

Not to be confused with the base models resolved from `--model` / config.toml
(`pocketsleep status` shows that one): a version is that base with the experts
sleep made fused into its weights.
"""

from __future__ import annotations

import json

import click

from ..journal.records import ModelVersion
from ..text import one_line
from ..tui.info import format_when
from .context import CliContext
from .sleep import ProgressLine
from .status import human_bytes

TITLES_SHOWN = 4


@click.group("models", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
@click.pass_context
def command(ctx: click.Context, as_json: bool) -> None:
    """Versions of your personal model: list them, merge, roll back.

    After each sleep the base model and the experts sleep made are fused into a new
    numbered version (the morning merge), checked against base + experts, and
    switched to. `pocketsleep models rollback 3` makes version 3 current again. The
    base model itself is the `model` setting (see `pocketsleep status`).
    """
    if ctx.invoked_subcommand is None:
        list_versions(ctx.obj, as_json)


def list_versions(obj: CliContext, as_json: bool) -> None:
    journal = obj.journal
    versions = journal.versions()  # newest first
    rows = [describe(v, older, journal) for v, older in zip(versions, versions[1:] + [None])]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No versions of your personal model yet: the first is made after the "
                   "first successful sleep.")
        return
    click.echo("Versions of your personal model (newest first):")
    for r in rows:
        size = human_bytes(r["size_bytes"]) if r["size_bytes"] else "-"
        n = len(r["experts"])
        nights = ", ".join(str(e["sleep_id"] or e["level"]) for e in r["experts"])
        click.echo(f"  v{r['version']:<3} {r['status']:<9} {format_when(r['created_at'])}  "
                   f"{size:>9}  {n} expert{'s' * (n != 1)} "
                   f"(night{'s' * (n != 1)} {nights or '-'})")
        if r["learned"]:
            titles = ", ".join(f'"{one_line(t, 40)}"' for t in r["learned"][:TITLES_SHOWN])
            more = len(r["learned"]) - TITLES_SHOWN
            click.echo(f"        learned: {titles}" + (f" (+{more} more)" if more > 0 else ""))
        if r["status"] in ("refused", "pruned") and r["notes"]:
            click.echo(f"        {one_line(r['notes'], 100)}")


def describe(v: ModelVersion, older: ModelVersion | None, journal) -> dict:
    """A version as the listing shows it; `learned` = titles of the conversations of
    the experts it added over the version before it."""
    experts = journal.experts_learned(v.expert_ids)
    new = set(v.expert_ids) - set(older.expert_ids if older else ())
    learned = [c["title"] or (f"conversation {c['id']} (forgotten)"
                              if c["status"] == "forgotten" else f"conversation {c['id']}")
               for e in experts if e["id"] in new for c in e["conversations"]]
    return {"version": v.id, "status": v.status, "created_at": v.created_at,
            "switched_at": v.switched_at, "base_model": v.base_model,
            "size_bytes": v.size_bytes, "notes": v.notes, "checks": v.checks,
            "experts": [{k: e[k] for k in ("id", "sleep_id", "level", "status")}
                        for e in experts],
            "learned": learned}


@command.command("rollback")
@click.argument("version")
@click.pass_obj
def rollback_command(obj: CliContext, version: str) -> None:
    """Make an earlier VERSION (3 or v3) the current one again.

    Its experts become exactly the active ones. Experts made after it are switched
    off, and the conversations only they had learned are pending again: the next
    sleep learns them afresh. The version that was current is kept, so a rollback
    can be undone the same way.
    """
    from ..versions import parse_version, rollback

    report = rollback(obj.paths, obj.config, parse_version(version))
    was = f" (was v{report.replaced})" if report.replaced else ""
    click.echo(f"Your personal model is v{report.version} again{was}.")
    if report.switched_off:
        n = len(report.pending_again)
        click.echo(f"Switched off experts {_ids(report.switched_off)}; {n} "
                   f"conversation{'s' * (n != 1)} will be learned again at the next sleep.")
    if report.switched_on:
        click.echo(f"Switched experts {_ids(report.switched_on)} back on.")


@command.command("merge")
@click.option("--retry", is_flag=True, help="Try again a set of experts whose merge was refused.")
@click.option("--verbose", "-v", is_flag=True, help="Print every progress step.")
@click.pass_obj
def merge_command(obj: CliContext, retry: bool, verbose: bool) -> None:
    """Merge the active experts into a new version now (sleep does it by itself)."""
    from ..versions import merge_if_needed

    progress = ProgressLine(verbose)
    try:
        report = merge_if_needed(obj.paths, obj.config, progress, retry_refused=retry)
    finally:
        progress.done()
    click.echo(report.summary())
    if report.status in ("refused", "busy"):
        raise SystemExit(3)


def merge_at_start(obj: CliContext) -> None:
    """chat and `ask`: a missed morning merge runs first, announced in one line on
    stderr (with its progress), before the model is loaded."""
    from ..versions import catch_up

    progress = ProgressLine(verbose=False)
    try:
        catch_up(obj.paths, obj.config, lambda line: click.echo(f"pocketsleep: {line}", err=True),
                 progress)
    finally:
        progress.done()


def _ids(ids: list[int]) -> str:
    return ", ".join(str(i) for i in ids)
