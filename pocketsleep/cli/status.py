"""`pocketsleep status`: what the assistant knows and how its nights went."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import __version__
from ..tui.info import personal_model_version
from ..text import printable
from ..versions.storage import disk_use
from . import sleep_runs
from .context import CliContext


def disk_usage(path: Path) -> int:
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def gather(obj: CliContext) -> dict:
    journal = obj.journal
    counts = journal.counts()
    last = journal.last_sleep()
    return {
        "version": __version__,
        "data_home": str(obj.paths.home),
        "journal": str(obj.paths.journal),
        "schema": journal.schema_version()[-1],
        "model": obj.config.model,
        "engine": obj.config.engine,
        "conversations": counts,
        "last_sleep": None
        if last is None
        else {"id": last.id, "started_at": last.started_at, "status": last.status,
              "error": last.error},
        "disk_bytes": disk_usage(obj.paths.home),
        "disk": disk_use(obj.paths),
        "personal_model": personal_model_version(journal, obj.paths),
        **{f"last_{kind}": last_run(journal, kind) for kind in sleep_runs.KINDS},
        "dream_policy": dream_policy(journal),
    }


def dream_policy(journal) -> dict | None:
    """The dream generator's policy after the last night that dreamt, and how many
    nights have updated it."""
    history = journal.dream_policies()
    if not history:
        return None
    return {"nights": len(history), "probabilities": history[0]["probabilities"]}


def dream_text(policy: dict | None) -> str:
    if policy is None:
        return "no night has dreamt yet"
    p = sorted(policy["probabilities"].items(), key=lambda kv: -kv[1])
    return (", ".join(f"{arm} {v:.2f}" for arm, v in p)
            + f" (policy over dream writers after {policy['nights']} night(s); "
            "`sleep --report` shows its evolution)")


def last_run(journal, kind: str) -> dict | None:
    """The last consolidation or rebuild: what it did, and the gate's verdict."""
    found = journal.sleeps(limit=1, kind=kind)
    if not found:
        return None
    run = found[0]
    return {"id": run.id, "started_at": run.started_at, "status": run.status,
            "error": run.error, "summary": sleep_runs.what_it_did(journal, run)}


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def command(obj: CliContext, as_json: bool) -> None:
    """Show the journal, the model and the last sleep."""
    info = gather(obj)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    c = info["conversations"]
    last = info["last_sleep"]
    if last is None:
        last_text = "never"
    else:
        last_text = f"#{last['id']} {last['started_at']} {last['status']}"
        if last["error"]:
            last_text += f" ({last['error']})"
    if c["conversations"] == 0:
        conv_text = "none yet (journal is empty)"
    else:
        conv_text = (
            f"{c['conversations']} ({c['waiting']} waiting for sleep, "
            f"{c['consolidated']} consolidated, {c['forgotten']} forgotten, "
            f"{c['private']} private)"
        )
    rows = [
        ("pocketsleep", info["version"]),
        ("data home", f"{info['data_home']} ({human_bytes(info['disk_bytes'])})"),
        ("journal", f"{info['journal']} (schema {info['schema']})"),
        ("model", f"{info['model']} (engine: {info['engine']})"),
        ("conversations", conv_text),
        ("messages", str(c["messages"])),
        ("experts", f"{c['active_experts']} active"),
        ("personal model", f"{info['personal_model']} (`pocketsleep models` lists versions)"),
        ("last sleep", last_text),
        *[(kind, f"#{r['id']} {r['started_at']} {r['status']}: {r['summary']}"
           + (f" ({r['error']})" if r["error"] else ""))
          for kind in sleep_runs.KINDS if (r := info[f"last_{kind}"])],
        ("dreaming", dream_text(info["dream_policy"])),
        ("disk use", ", ".join(f"{k.replace('_', ' ')} {human_bytes(v)}"
                               for k, v in info["disk"].items()
                               if k not in ("total", "other") and v)),
    ]
    for key, value in rows:
        # The last sleep's error (it can quote a path or a model's text) is shown,
        # never obeyed by the terminal.
        click.echo(printable(f"{key:<14} {value}"))
