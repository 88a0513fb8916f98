"""Errors a user can act on.

Anything raised as a `PocketsleepError` is shown by the CLI as one line (the message,
which says what is wrong and what to do) with a non-zero exit and no traceback.
Everything else is a bug and keeps its traceback.
"""


class PocketsleepError(Exception):
    """A problem with the user's input, files or machine, not with pocketsleep."""

    exit_code = 1


class ConfigError(PocketsleepError):
    """The data home or the config file cannot be used."""


class JournalError(PocketsleepError):
    """The journal database cannot be opened or does not hold what was asked for."""


class InputError(PocketsleepError):
    """A file or argument given on the command line is malformed."""


class Busy(PocketsleepError):
    """Something that must run alone (a sleep) is already running."""


class ScheduleError(PocketsleepError):
    """The nightly schedule cannot be installed, read or removed (crontab missing,
    launchctl or systemctl failing)."""


class MissingDependency(PocketsleepError):
    """An optional heavy package (mlx, llama_cpp, textual, ...) is not installed."""


def require(module: str, extra: str, what: str):
    """Import an optional heavy module, or explain how to install it.

    `extra` is the pocketsleep extra that provides it, e.g. "mlx" or "chat".
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependency(
            f"{what} needs the '{module.split('.')[0]}' package ({e}); "
            f"install it with ./install.sh or: pip install 'pocketsleep[{extra}]'"
        ) from None
