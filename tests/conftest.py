"""Shared fixtures: every test gets its own empty data home."""

from __future__ import annotations

import pytest

from pocketsleep.config import Paths
from pocketsleep.journal import Journal


@pytest.fixture(autouse=True)
def data_home(tmp_path, monkeypatch):
    """Point POCKETSLEEP_HOME at a fresh folder so no test touches a real one."""
    home = tmp_path / "home"
    monkeypatch.setenv("POCKETSLEEP_HOME", str(home))
    return home


@pytest.fixture
def paths(data_home) -> Paths:
    return Paths.resolve().ensure()


@pytest.fixture
def journal(paths):
    j = Journal.open(paths.journal)
    yield j
    j.close()
