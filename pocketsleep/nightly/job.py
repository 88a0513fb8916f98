"""The nightly job: what the schedule runs, as a short sequence of steps.

    record the run  →  anything pending?  →  on battery?  →  wait for open chats
    to close  →  sleep  →  consolidate expired experts  →  morning merge  →  record

Every run leaves one `nightly_runs` row: slept, rejected (the gate said no; the
conversations stay pending), skipped (with the reason: nothing pending, on battery,
chat open, another sleep running) or failed (with the error; the traceback goes to
the log). Cheap checks come first so a night with nothing to do costs nothing.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ..config import Config, Paths, load_config
from ..errors import Busy, PocketsleepError
from ..journal import Journal
from ..sleep import run_sleep
from . import power
from .chat_lock import chats_closed
from .log import nightly_logger

# How long a run waits for open chats to close before it skips the night. A catch-up
# started by a chat that is opening waits longer: that chat is the reason it runs.
CHAT_WAIT_SECONDS = {"schedule": 2 * 3600, "catch-up": 12 * 3600}

NOTHING_PENDING = "nothing pending"
ON_BATTERY = "on battery"
CHAT_OPEN = "chat open"
SLEEP_RUNNING = "another sleep is running"


@dataclass(frozen=True)
class Outcome:
    outcome: str  # "slept" | "rejected" | "skipped" | "failed"
    detail: str | None = None
    sleep_id: int | None = None

    def describe(self) -> str:
        return self.outcome + (f": {self.detail}" if self.detail else "")


@dataclass
class Night:
    """What the steps share."""

    paths: Paths
    config: Config | None
    journal: Journal
    log: logging.Logger
    trigger: str


def run_nightly(paths: Paths, config: Config | None, trigger: str = "schedule",
                run_id: int | None = None, chat_wait: float | None = None,
                echo: bool = False) -> Outcome:
    """One run, recorded from start to end. `run_id` is a run recorded by whoever
    started this one (a catch-up); otherwise the run records itself. With no
    `config`, config.toml is read once the run is recorded: a broken one is then
    this run's recorded failure, not an error only the output log shows."""
    log = nightly_logger(paths, echo)
    with Journal.open(paths.journal) as journal:
        if run_id is None:
            run_id = journal.begin_nightly_run(trigger, os.getpid())
        else:
            journal.claim_nightly_run(run_id, os.getpid())
        log.info("nightly run %d (%s) started", run_id, trigger)
        night = Night(paths, config, journal, log, trigger)
        wait = CHAT_WAIT_SECONDS[trigger] if chat_wait is None else chat_wait
        try:
            if night.config is None:
                night.config = load_config(paths)
            outcome = _steps(night, wait)
        except BaseException as e:
            outcome = Outcome("failed", _failure(e))
            log.exception("nightly run %d failed", run_id)
            journal.end_nightly_run(run_id, outcome.outcome, outcome.detail)
            if not isinstance(e, Exception):
                raise  # interrupted: recorded, and the process still stops
            return outcome
        journal.end_nightly_run(run_id, outcome.outcome, outcome.detail, outcome.sleep_id)
        log.info("nightly run %d: %s", run_id, outcome.describe())
        return outcome


def _steps(night: Night, chat_wait: float) -> Outcome:
    if night.journal.counts()["waiting"] == 0:
        return Outcome("skipped", NOTHING_PENDING)
    if night.config.skip_on_battery and power.on_battery():
        return Outcome("skipped", ON_BATTERY)
    with chats_closed(night.paths, chat_wait, on_wait=lambda: night.log.info(
            "a chat is open; waiting up to %.0f min for it to close", chat_wait / 60)) as ok:
        if not ok:
            return Outcome("skipped", CHAT_OPEN)
        outcome = sleep(night)
        # The morning merge follows a night that learned something, inside the chat
        # lock, so no chat loads the model while it is replaced.
        if outcome.outcome == "slept":
            outcome = consolidate(night, outcome)
            outcome = morning_merge(night, outcome)
        return outcome


def consolidate(night: Night, slept: Outcome) -> Outcome:
    """Continuum memory: experts whose window expired become one slower expert,
    before the merge. A consolidation that fails or is rejected does not undo the
    night: the experts stay as they are, and a later night tries again."""
    from ..sleep.consolidate import consolidate_if_due

    try:
        report = consolidate_if_due(night.paths, night.config, _progress_to(night.log))
    except Exception as e:
        night.log.exception("consolidation failed")
        return Outcome(slept.outcome, f"{slept.detail}; consolidation failed: {_failure(e)}",
                       slept.sleep_id)
    if report.summary() is None:
        return slept
    night.log.info("consolidation: %s", report.summary())
    done = "; ".join(f"{r.into} expert {r.expert_id}" if r.status == "consolidated"
                     else f"{r.into} consolidation rejected" for r in report.runs)
    return Outcome(slept.outcome, f"{slept.detail}; {done or report.note}", slept.sleep_id)


def morning_merge(night: Night, slept: Outcome) -> Outcome:
    """Fuse tonight's expert into a new personal-model version. A merge that fails or
    is refused does not undo the night: the expert is kept, the engines wear it
    unfused, and the next start tries the merge again."""
    from ..versions.merge import merge_if_needed

    try:
        report = merge_if_needed(night.paths, night.config or Config(),
                                 _progress_to(night.log))
        night.log.info("morning merge: %s", report.summary())
        merged = f"v{report.version}" if report.status == "merged" else report.status
    except PocketsleepError as e:
        night.log.error("morning merge failed: %s", e)
        merged = f"merge failed: {e}"
    return Outcome(slept.outcome, f"{slept.detail}; {merged}", slept.sleep_id)


def sleep(night: Night) -> Outcome:
    night.log.info("sleeping: %d conversations waiting", night.journal.counts()["waiting"])
    try:
        report = run_sleep(night.paths, night.config, progress=_progress_to(night.log))
    except Busy:
        return Outcome("skipped", SLEEP_RUNNING)
    if report.status == "nothing to learn":
        return Outcome("skipped", NOTHING_PENDING)
    if report.status == "succeeded":
        return Outcome("slept", f"expert {report.expert_id} from "
                       f"{len(report.conversations)} conversations, {report.seconds:.0f} s",
                       report.sleep_id)
    return Outcome("rejected", "; ".join(report.reasons) or None, report.sleep_id)


def _progress_to(log: logging.Logger):
    """Log each phase once, not every step (the log is for reading the next morning)."""
    seen = set()

    def progress(phase: str, step: int, total: int) -> None:
        if phase not in seen:
            seen.add(phase)
            log.info("phase: %s", phase)

    return progress


def _failure(e: BaseException) -> str:
    if isinstance(e, PocketsleepError):
        return str(e)
    if isinstance(e, KeyboardInterrupt):
        return "stopped before it finished"
    return f"{type(e).__name__}: {e}"[:500]
