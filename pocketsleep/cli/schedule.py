"""`pocketsleep schedule install|status|remove`: sleep every night by itself."""

from __future__ import annotations

import datetime as dt
import json
import os

import click

from ..journal.records import NightlyRun
from ..schedules import manage, state, systemd
from ..schedules.timing import DEFAULT_AT, local, next_run, parse_at
from .context import CliContext


@click.group("schedule")
def command() -> None:
    """Run the nightly sleep every night (launchd, systemd timer or cron)."""


@command.command("install")
@click.option("--at", "at_text", default=DEFAULT_AT, show_default=True, metavar="HH:MM",
              help="Time of day (24-hour, local time).")
@click.option("--using", type=click.Choice(sorted(manage.SYSTEMS)),
              help="Scheduler (default: launchd on macOS; a systemd user timer where a "
                   "user session runs, else cron).")
@click.pass_obj
def install(obj: CliContext, at_text: str, using: str | None) -> None:
    """Schedule `pocketsleep nightly`; installing again replaces the schedule."""
    at = parse_at(at_text)
    schedule = manage.install(obj.paths.ensure(), at, using)
    click.echo(f"The nightly sleep runs every day at {schedule.at} ({schedule.system}): "
               f"{schedule.location}.")
    click.echo(f"Next run {next_run(at, dt.datetime.now()):%Y-%m-%d %H:%M}; "
               f"log: {obj.paths.nightly_log}")
    for note in notes(schedule):
        click.echo(f"Note: {note}")


@command.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def status(obj: CliContext, as_json: bool) -> None:
    """Show the schedule, its next run and how the last run went."""
    info = gather(obj, dt.datetime.now())
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    s = info["schedule"]
    if s is None:
        click.echo("No nightly sleep is scheduled; `pocketsleep schedule install` sets one up.")
        rows = []
    else:
        rows = [("schedule", f"{s['system']}, every day at {s['at']} "
                             f"(installed {local(s['installed_at']):%Y-%m-%d %H:%M})"),
                ("installed", s["location"] if info["in_place"] else
                 "MISSING (removed outside pocketsleep?); `pocketsleep schedule install` "
                 "puts it back"),
                ("command", " ".join(s["command"])),
                ("next run", info["next_run"])]
        if info["missed"]:
            rows.append(("missed", f"the run due {info['missed']} did not happen; it catches "
                                   "up at the next `pocketsleep chat` or `status`"))
    rows.append(("last run", describe_run(info["last_run"])))
    rows.append(("log", info["log"]))
    for key, value in rows:
        click.echo(f"{key:<10} {value}")
    for note in info["notes"]:
        click.echo(f"note       {note}")


@command.command("remove")
@click.pass_obj
def remove(obj: CliContext) -> None:
    """Remove the schedule (only what `schedule install` wrote)."""
    removed = manage.remove(obj.paths)
    if removed:
        click.echo(f"Removed the nightly schedule ({', '.join(removed)}).")
    else:
        click.echo("No nightly schedule was installed.")


def notes(schedule: state.InstalledSchedule) -> list[str]:
    if schedule.system == "systemd" and not systemd.lingers():
        return ["user timers run only while you are logged in; "
                "`loginctl enable-linger` keeps them running after you log out"]
    if schedule.system == "cron":
        return ["cron runs nothing while the machine is off; a missed night catches up "
                "at the next `pocketsleep chat`"]
    return []


def gather(obj: CliContext, now: dt.datetime) -> dict:
    from ..nightly.catchup import missed_due

    schedule = state.load(obj.paths)
    journal = obj.journal
    last = journal.last_nightly_run()
    info = {"schedule": None, "in_place": None, "next_run": None, "missed": None,
            "last_run": None if last is None else {**last.__dict__, "alive": _alive(last)},
            "log": str(obj.paths.nightly_log), "notes": []}
    if schedule is not None:
        missed = missed_due(obj.paths, journal, now)
        info.update(schedule=schedule.__dict__, in_place=manage.is_in_place(schedule),
                    next_run=f"{next_run(schedule.time_of_day, now):%Y-%m-%d %H:%M}",
                    missed=None if missed is None else f"{missed:%Y-%m-%d %H:%M}",
                    notes=notes(schedule))
    return info


def _alive(run: NightlyRun) -> bool | None:
    """Whether a 'running' run's process still exists (None: not known yet)."""
    if run.outcome != "running" or run.pid is None:
        return None
    try:
        os.kill(run.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def describe_run(run: dict | None) -> str:
    if run is None:
        return "never"
    when = f"{local(run['started_at']):%Y-%m-%d %H:%M} ({run['trigger']})"
    if run["outcome"] == "running":
        state_text = {None: "starting", True: f"running (pid {run['pid']})",
                      False: "stopped before it finished"}[run["alive"]]
        return f"{when} {state_text}"
    return f"{when} {run['outcome']}" + (f": {run['detail']}" if run["detail"] else "")
