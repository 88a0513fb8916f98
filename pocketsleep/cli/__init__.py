"""The `pocketsleep` command line.

One module per command group; this module only assembles them and turns domain
errors into one clean line at the edge (`main`).
"""

from __future__ import annotations

import errno
import os
import sqlite3
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
    except click.exceptions.Abort as e:
        # Click turns Ctrl-C into Abort before we see it; an interrupted command exits
        # 130 like any other, a declined confirmation 1.
        if isinstance(e.__cause__, KeyboardInterrupt):
            click.echo("Interrupted.", err=True)
            return 130
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except sqlite3.DatabaseError as e:
        # Fix: a journal damaged mid-file (its header intact, so it opens), a full disk
        # or a long-held write lock surfaced as a traceback from the first query that
        # touched it. Not a bug in pocketsleep: one line saying what to do.
        from ..config import Paths
        from ..journal.db import explain_database_error

        click.echo(f"pocketsleep: error: {explain_database_error(Paths.resolve().journal, e)}",
                   err=True)
        return 1
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # Fix: a full disk (a lock file, an expert, a log line) was a traceback.
        where = f" writing {e.filename}" if e.filename else ""
        click.echo(f"pocketsleep: error: the disk is full{where}; free some space and run "
                   "the command again", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except BrokenPipeError:
        # `pocketsleep history | head`: the reader left; not an error worth a traceback.
        sys.stderr.close()
        return 0
    return 0
