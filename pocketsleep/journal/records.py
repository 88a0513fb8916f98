"""The journal's records: what a row means once it leaves SQLite (no SQL here)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Sequence

from ..errors import InputError

ROLES = ("system", "user", "assistant")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Conversation:
    id: int
    started_at: str
    updated_at: str
    title: str | None
    private: bool
    status: str
    source: str
    message_count: int = 0

    @property
    def display_title(self) -> str:
        return self.title or f"Conversation {self.id}"


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    role: str
    content: str
    created_at: str
    model_version: int | None
    token_count: int | None
    state: str


def superseded_ids(messages: Sequence[Message]) -> set[int]:
    """Assistant answers replaced by a later answer to the same user turn (regenerate).

    The journal keeps every answer; in a run of consecutive assistant messages only
    the last one counts as the answer, on screen and in the prompt.
    """
    out: set[int] = set()
    for before, after in zip(messages, messages[1:]):
        if before.role == "assistant" and after.role == "assistant":
            out.add(before.id)
    return out



@dataclass(frozen=True)
class Sleep:
    id: int
    started_at: str
    ended_at: str | None
    status: str
    metrics: dict
    error: str | None
    kind: str = "night"  # "night" | "consolidation" | "rebuild" (see migrations.m005)


def check_role(role: str) -> None:
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")


def conversation_from_row(row: dict) -> Conversation:
    row = dict(row)
    row["private"] = bool(row["private"])
    return Conversation(**row)


def sleep_from_row(row: dict) -> Sleep:
    row = dict(row)
    row["metrics"] = json.loads(row["metrics"]) if row["metrics"] else {}
    return Sleep(**row)


@dataclass(frozen=True)
class NightlyRun:
    """One run of the scheduled nightly job (see `pocketsleep.nightly`)."""

    id: int
    started_at: str
    finished_at: str | None
    trigger: str  # "schedule" | "catch-up"
    outcome: str  # "running" | "slept" | "rejected" | "skipped" | "failed"
    detail: str | None  # why it skipped or failed; what it learned
    sleep_id: int | None
    pid: int | None


@dataclass(frozen=True)
class ModelVersion:
    """One numbered version of the personal model: the base with experts fused in."""

    id: int  # the version number people see ("v3")
    created_at: str
    base_model: str  # the model spec it was built on ("default", a path, a hub id)
    path: str  # its folder, relative to Paths.versions
    status: str  # "ready" | "current" | "previous" | "refused" | "pruned"
    notes: str | None  # why it was refused, pruned or dropped
    switched_at: str | None  # when it last became current
    size_bytes: int | None
    checks: dict  # the fused-vs-unfused comparison
    expert_ids: tuple[int, ...]  # the experts fused into it

    @property
    def label(self) -> str:
        return f"v{self.id}"


def version_from_row(row: dict, expert_ids: Sequence[int]) -> ModelVersion:
    row = dict(row)
    row["checks"] = json.loads(row["checks"]) if row["checks"] else {}
    return ModelVersion(**row, expert_ids=tuple(expert_ids))
