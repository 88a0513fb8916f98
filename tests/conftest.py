"""Shared fixtures: every test gets its own empty data home."""

from __future__ import annotations

import pytest

# Load the program as its CLI does (the BLAS set up first), before any test file:
# a test file run alone used to load it through its own imports, and the tiny
# models' training, which amplifies rounding, crossed a gate's threshold there and
# not in the full suite (test_consolidate: soft recall 0.618 -> 0.612 alone,
# 0.62 -> 0.585 after test_cli.py).
import pocketsleep.cli  # noqa: E402,F401

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
