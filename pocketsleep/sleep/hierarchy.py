"""Continuum memory: which experts are due to be consolidated, and into what.

Three levels, updated at three frequencies (the paper's continuum memory):

    nightly   (fast)  one expert per night that learned something
    weekly    (mid)   every `nightly_window` nightly experts become one weekly expert
    longterm  (slow)  every `weekly_window` weekly experts, together with the
                      long-term expert, become the new long-term expert

A consolidation retires the experts it replaces, so at the end of a night at most
`nightly_window - 1` nightly, `weekly_window - 1` weekly and one long-term expert
are active: stacking ever more separately trained adapters degrades the model, and
each one costs time at every token until the morning merge. The long-term level
keeps one expert: it absorbs each expiring group of weeklies, gated like every
consolidation, so nothing it held may be lost on the way.

No heavy imports here: `pocketsleep sleep` reads this after every night.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config, Paths, check_values
from .options import SleepOptions

LEVELS = ("nightly", "weekly", "longterm")
# A consolidated expert gets the capacity of what it replaces (the sum of their
# ranks), up to this many times a night's rank: seven rank-16 nights in one rank-16
# expert would have to squeeze seven nights into the room of one.
MAX_RANK_FACTOR = 4
# Its distillation runs a night's steps per expert replaced, up to this many nights'
# worth: it learns several nights' material, and it runs once a week, not nightly.
MAX_STEPS_FACTOR = 4


@dataclass(frozen=True)
class Plan:
    into: str  # the level of the new expert: "weekly" | "longterm"
    experts: tuple[dict, ...]  # the expert rows it replaces, oldest first

    @property
    def ids(self) -> list[int]:
        return [r["id"] for r in self.experts]


def windows(config: Config, paths: Paths) -> tuple[int, int]:
    """The configured windows, checked (config.check_values)."""
    check_values(config, paths.config_file)
    return config.nightly_window, config.weekly_window


def due(active: list[dict], nightly_window: int, weekly_window: int,
        force: bool = False) -> Plan | None:
    """The next consolidation the active experts call for, fastest level first.

    `force` consolidates the nightly experts now, however few (`sleep
    --consolidate-now`, to try it by hand)."""
    by_level = {level: [r for r in active if r["level"] == level] for level in LEVELS}
    nightly = by_level["nightly"]
    if nightly and (len(nightly) >= nightly_window or force):
        return Plan("weekly", tuple(nightly))
    if len(by_level["weekly"]) >= weekly_window:
        return Plan("longterm", tuple(by_level["longterm"] + by_level["weekly"]))
    return None


def max_active(nightly_window: int, weekly_window: int) -> int:
    """How many experts stay active at most once every due consolidation passed."""
    return (nightly_window - 1) + (weekly_window - 1) + 1


def expert_rank(row: dict, default: int) -> int:
    """An expert's LoRA rank, from the config the journal stored with it."""
    import json

    config = json.loads(row.get("config") or "{}")
    return int(config.get("lora_parameters", {}).get("rank", default))


def consolidation_options(options: SleepOptions, plan: Plan) -> SleepOptions:
    """A night's options, sized for what this consolidation replaces."""
    ranks = sum(expert_rank(r, options.rank) for r in plan.experts)
    n = len(plan.experts)
    return options.but(rank=max(options.rank, min(ranks, MAX_RANK_FACTOR * options.rank)),
                       steps=options.steps * max(1, min(n, MAX_STEPS_FACTOR)))
