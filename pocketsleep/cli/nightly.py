"""`pocketsleep nightly`: the job the schedule runs (sleep, unless there is reason not to)."""

from __future__ import annotations

import signal
import sys

import click

from .context import CliContext


class Stopped(KeyboardInterrupt):
    """SIGTERM (systemd stopping the unit, a shutdown): stop the way Ctrl+C does, so
    the sleep and the run are recorded as interrupted rather than left 'running'."""


def _stop(signum, frame):
    raise Stopped()


@click.command("nightly")
@click.option("--catch-up", is_flag=True,
              help="This run makes up for a night that did not run (waits longer for "
                   "open chats).")
@click.option("--wait-for-chat", type=click.FloatRange(0), metavar="MINUTES",
              help="How long to wait for open chats to close before skipping the night "
                   "(default 120; 720 with --catch-up).")
@click.option("--run-id", type=int, hidden=True)
@click.pass_obj
def command(obj: CliContext, catch_up: bool, wait_for_chat: float | None,
            run_id: int | None) -> None:
    """Sleep now the way the schedule does: skipped when nothing is pending, on
    battery (the `skip_on_battery` setting) or while a chat is open; logged to
    logs/nightly.log and recorded for `pocketsleep schedule status`.
    """
    from ..nightly.job import run_nightly

    signal.signal(signal.SIGTERM, _stop)
    outcome = run_nightly(
        obj.paths.ensure(), None, "catch-up" if catch_up else "schedule", run_id,
        None if wait_for_chat is None else wait_for_chat * 60, echo=sys.stderr.isatty())
    click.echo(f"Nightly run: {outcome.describe()}")
    if outcome.outcome == "failed":
        raise SystemExit(1)


def catch_up_at_start(obj: CliContext, command_name: str) -> None:
    """A night the schedule missed starts now, in the background; the user is told in
    one line (the chat shows it as a notification, others print it)."""
    if not obj.paths.schedule_file.exists():
        return  # no schedule: the common case costs one stat
    from ..errors import PocketsleepError
    from ..nightly.catchup import catch_up

    try:
        notice = catch_up(obj.paths, obj.journal, in_chat=command_name == "chat")
    except PocketsleepError:
        return  # a damaged journal or schedule file: the command itself will say so
    if notice is None:
        return
    if command_name == "chat":
        obj.notices.append(notice)
    else:
        click.echo(f"pocketsleep: {notice}", err=True)
