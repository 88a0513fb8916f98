"""What every command shares: the data home, the settings and the journal, opened lazily."""

from __future__ import annotations

from functools import cached_property

from ..config import Config, Paths, load_config
from ..journal import Journal


class CliContext:
    def __init__(self, paths: Paths | None = None):
        self.paths = paths or Paths.resolve()
        self.notices: list[str] = []  # one-line news for the user, shown by the chat

    @cached_property
    def config(self) -> Config:
        return load_config(self.paths)

    @cached_property
    def journal(self) -> Journal:
        return Journal.open(self.paths.ensure().journal)

    def close(self) -> None:
        if "journal" in self.__dict__:
            self.journal.close()
