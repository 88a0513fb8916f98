"""The `pocketsleep` command line.

One module per command group; this module only assembles them and turns domain
errors into one clean line at the edge (`main`).
"""

from __future__ import annotations

import os
import sys

import click

from .. import __version__
from ..config import PRIVATE_DIR_MODE
from ..errors import PocketsleepError
from .context import CliContext


# Light commands that start a missed night's sleep in the background (not `ask`, which
# would compete with it for the CPU). The chat does it too, once it holds its lock.
CATCH_UP_ON = {"status", "history", "log"}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pocketsleep")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """A local assistant that learns what you tell it while you sleep.

    Data lives in $POCKETSLEEP_HOME (default: your user data folder).
    """
    ctx.obj = CliContext()
    ctx.call_on_close(ctx.obj.close)
    if ctx.invoked_subcommand in CATCH_UP_ON:
        from .nightly import catch_up_at_start

        catch_up_at_start(ctx.obj, ctx.invoked_subcommand)


def _register() -> None:
    from . import (ask, chat, demo, eval, export, forget, history, log, models, nightly,
                   schedule, sleep, status)

    for module in (status, history, log, forget, ask, chat, sleep, models, export, eval, demo,
                   schedule, nightly):
        cli.add_command(module.command)


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning user errors into one line and an exit code."""
    # Whatever pocketsleep creates (journal, experts, models, logs) is private.
    os.umask(0o777 & ~PRIVATE_DIR_MODE)
    try:
        cli.main(args=argv, prog_name="pocketsleep", standalone_mode=False)
    except PocketsleepError as e:
        click.echo(f"pocketsleep: error: {e}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except BrokenPipeError:
        # `pocketsleep history | head`: the reader left; not an error worth a traceback.
        sys.stderr.close()
        return 0
    return 0
