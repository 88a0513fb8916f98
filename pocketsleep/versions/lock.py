"""One merge, switch or rollback at a time (a nightly merge and a chat's catch-up,
say): an exclusive lock on `Paths.merge_lock`, never waited for."""

from __future__ import annotations

from ..config import Paths
from ..files import exclusive_lock


def merge_lock(paths: Paths):
    return exclusive_lock(paths.ensure().merge_lock,
                          "another merge or rollback of your personal model is running; "
                          "try again when it has finished")
