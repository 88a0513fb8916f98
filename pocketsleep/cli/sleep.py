"""`pocketsleep sleep`: consolidate today's conversations into the model's weights."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict

import click

from ..errors import PocketsleepError
from ..text import counted, printable
from ..sleep.options import ABLATIONS, SleepOptions, parse_budget
from .context import CliContext


class ProgressLine:
    """Phase, step and an ETA on one updating stderr line (or plain lines when piped)."""

    def __init__(self, verbose: bool):
        self.verbose = verbose
        self.tty = sys.stderr.isatty()
        self.phase, self.phase_started = None, time.perf_counter()

    def __call__(self, phase: str, step: int, total: int) -> None:
        now = time.perf_counter()
        if phase != self.phase:
            if self.phase is not None and self.tty:
                click.echo("", err=True)
            self.phase, self.phase_started = phase, now
        eta = ""
        if step > 0 and total > 1:
            eta = f", about {(now - self.phase_started) / step * (total - step):.0f} s left"
        text = f"{phase}" + (f" {step}/{total}{eta}" if total > 1 else "")
        if self.tty:
            click.echo(f"\r\033[K{text}", err=True, nl=False)
        elif self.verbose or step == 0 or step % 10 == 0:
            click.echo(text, err=True)

    def done(self) -> None:
        if self.tty and self.phase is not None:
            click.echo("", err=True)


@click.command("sleep")
@click.option("--budget", help="Stop training in time to finish within this (e.g. 20m).")
@click.option("--dry-run", is_flag=True, help="Say what tonight's sleep would learn from.")
@click.option("--report", "show_report", is_flag=True, help="Show the last sleep's report.")
@click.option("--steps", type=click.IntRange(1, 10_000), help="Distillation steps.")
@click.option("--variant", type=click.Choice(sorted(ABLATIONS)), default="sleep",
              show_default=True, help="Objective ablations, for experiments.")
@click.option("--no-gate", is_flag=True, help="Keep the expert even if the gate says no.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--verbose", "-v", is_flag=True, help="Print every progress step.")
@click.option("--no-merge", is_flag=True,
              help="Do not merge tonight's expert into a new version of the personal model.")
@click.option("--consolidate-now", is_flag=True,
              help="Consolidate the nightly experts into a weekly one now, whatever the "
                   "window (to try it by hand).")
@click.pass_obj
def command(obj: CliContext, budget, dry_run, show_report, steps, variant, no_gate,
            as_json, verbose, no_merge, consolidate_now) -> None:
    """Learn the pending conversations into a new LoRA expert (knowledge seeding).

    Private conversations are never learned from. If the gate rejects tonight's
    expert, the conversations stay pending for the next night.
    """
    if show_report:
        print_report(obj, as_json)
        return
    from ..sleep import run_sleep

    options = SleepOptions().but(**ABLATIONS[variant])
    if budget:
        options = options.but(budget_seconds=parse_budget(budget))
    if steps:
        options = options.but(steps=steps)
    if no_gate:
        options = options.but(gate=False)
    progress = ProgressLine(verbose)
    merged = merge_failed = None
    try:
        report = run_sleep(obj.paths, obj.config, options, progress, dry_run=dry_run)
        # Continuum memory, at the end of the night and before the merge.
        memory = consolidate(obj, report, options, progress, consolidate_now)
        if (report.status == "succeeded" or memory.consolidated) and not no_merge:
            # The morning merge: tonight's expert joins the others in a new version.
            from ..versions import merge_if_needed

            try:
                merged = merge_if_needed(obj.paths, obj.config, progress)
            except PocketsleepError as e:
                # Fix: a merge that could not run (a full disk, say) printed only its
                # error, hiding that the night itself was learned and kept.
                merge_failed = PocketsleepError(
                    f"the morning merge failed: {e}. Tonight's expert is kept; until a "
                    "merge succeeds the assistant wears it unfused (same answers, slower)")
    finally:
        progress.done()
    if as_json:
        out = {**report.__dict__, "consolidation": asdict(memory),
               "merge": merged.__dict__ if merged else None,
               "merge_error": str(merge_failed) if merge_failed else None}
        click.echo(json.dumps(out, indent=2, default=str))
        if report.status == "rejected":
            raise SystemExit(3)  # as without --json: scripts can tell a rejected night
        if merge_failed:
            raise merge_failed
        return
    if report.status == "nothing to learn":
        click.echo("Nothing to learn: no pending conversations (private ones are skipped).")
        tell(memory, merged)
    elif report.status == "dry run":
        m = report.metrics
        ids = ", ".join(map(str, report.conversations))
        click.echo(f"Would learn from {counted(len(report.conversations), 'conversation')} "
                   f"({ids}; see `pocketsleep history`): {counted(m['statements'], 'message')} "
                   f"in which you told it something, ~{m['episode_tokens_estimate']} tokens.")
    elif report.status == "succeeded":
        click.echo(f"Slept in {report.seconds:.0f} s: learned {len(report.conversations)} "
                   f"conversations into expert {report.expert_id}.")
        deferred = report.metrics.get("deferred")
        if deferred:
            n = len(deferred)
            click.echo(f"The budget left {n} conversation{'s' * (n != 1)} pending for the "
                       "next sleep (run `pocketsleep sleep` again to learn them now).")
        superseded = report.metrics.get("superseded")
        if superseded:
            click.echo(f"You took back what {counted(len(superseded), 'earlier answer')} said "
                       "(`pocketsleep sleep --report` lists them): later nights no longer "
                       "hold them in place.")
        tell(memory, merged)
        if merge_failed:
            raise merge_failed
    else:
        click.echo(f"Slept in {report.seconds:.0f} s, but the gate rejected tonight's expert: "
                   + "; ".join(report.reasons)
                   + ". The conversations stay pending.")
        tell(memory, merged)
        raise SystemExit(3)


def consolidate(obj: CliContext, report, options: SleepOptions, progress, force: bool):
    """Consolidate the experts whose window expired (with --consolidate-now, the
    nightly ones, however few), with the night's options."""
    from ..sleep.consolidate import ConsolidationReport, consolidate_if_due

    if report.status == "dry run":
        return ConsolidationReport()
    return consolidate_if_due(obj.paths, obj.config, progress, options, force=force)


def tell(memory, merged) -> None:
    """What the end of the night did: consolidations, then the merge."""
    if memory.summary():
        click.echo(memory.summary())
    if merged is not None:
        click.echo(merged.summary())


def print_report(obj: CliContext, as_json: bool) -> None:
    from . import sleep_runs

    last = obj.journal.last_sleep()
    if last is None:
        click.echo("No sleep yet.")
        return
    # The consolidations at the end of that night, and the rebuilds of a forget since.
    runs = sleep_runs.since_last_night(obj.journal)
    if as_json:
        out = {**last.__dict__, **{f"{kind}s": [sleep_runs.as_json(obj.journal, r)
                                                for r in runs if r.kind == kind]
                                   for kind in sleep_runs.KINDS},
               "dream_policies": obj.journal.dream_policies(limit=POLICY_NIGHTS)}
        click.echo(json.dumps(out, indent=2, default=str))
        return
    m = last.metrics
    click.echo(f"Sleep #{last.id}: {last.status}, {last.started_at} → {last.ended_at or '…'}")
    if last.error:
        click.echo(f"  why: {printable(last.error)}")
    if m:
        secs = m.get("seconds", {})
        click.echo(f"  conversations: {m.get('conversations')}")
        if m.get("deferred"):
            click.echo(f"  left pending by the budget: {m['deferred']}")
        click.echo(f"  examples: {m.get('examples')}")
        if m.get("superseded"):
            what = ("taken back (earlier questions no longer held)" if last.status == "succeeded"
                    else "would have taken back, had it been kept")
            click.echo(printable(f"  {what}: {'; '.join(m['superseded'])}"))
        click.echo("  time: " + ", ".join(f"{k} {v:.0f} s" for k, v in secs.items()))
        d = m.get("distill", {})
        click.echo(f"  distillation: {d.get('steps')} steps, loss "
                   f"{d.get('loss_first_quarter')} → {d.get('loss_last_quarter')}")
        fit = d.get("fit_kl") or {}
        if fit:
            click.echo("  fit (KL to the teacher per token, before → after): " + "; ".join(
                f"{kind} {' → '.join(str(v) for v in kl)}" for kind, kl in fit.items()))
        for line in gate_lines(m.get("gate")):
            click.echo(line)
        for line in dream_lines(m.get("dream")):
            click.echo(printable(line))
    for run in runs:
        for line in sleep_runs.describe(obj.journal, run):
            click.echo(printable(line))
    for line in policy_lines(obj.journal.dream_policies(limit=POLICY_NIGHTS)):
        click.echo(line)


# How many nights of the dream policy's evolution the report shows.
POLICY_NIGHTS = 7


def _figure(x) -> str:
    return "none" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def gate_lines(g: dict | None) -> list[str]:
    """What the night's gate measured (metrics["gate"]), in a few lines."""
    if not g:
        return []
    b, a = g.get("before", {}), g.get("after", {})
    lines = [f"  held-out log-prob {b.get('heldout_logprob')} → "
             f"{a.get('heldout_logprob')}; drift KL {g.get('drift_kl')} "
             f"(never-trained questions {g.get('unseen_drift_kl')}); "
             f"perplexity change {g.get('ppl_change')}"]
    if b.get("earlier_logprob") is not None:
        lines.append(f"  earlier nights' probes: log-prob {_figure(b['earlier_logprob'])} → "
                     f"{_figure(a.get('earlier_logprob'))}; their facts' soft recall "
                     f"{_figure(b.get('earlier_fact_recall'))} → "
                     f"{_figure(a.get('earlier_fact_recall'))}")
    if g.get("quiz_right_before") is not None:
        lines.append(f"  general quiz: {g['quiz_right_after']} of the "
                     f"{g['quiz_right_before']} it knew still right")
    back = g.get("scaled_back")
    if back and back.get("passed"):
        lines.append(f"  kept at {back['factor']:g} of its strength: the whole expert was "
                     f"rejected ({'; '.join(back['full_reasons'])}); the figures above are "
                     "the scaled one's")
    elif back:
        lines.append(f"  at {back['factor']:g} of its strength it was rejected too ("
                     + "; ".join(back["reasons"]) + ")")
    return lines


def dream_lines(d: dict | None) -> list[str]:
    """The night's dreaming (metrics["dream"]), in a few lines."""
    if not d:
        return []
    if not d.get("ran"):
        return ["  dreaming: off"]
    arms = ", ".join(f"{a} {n}" for a, n in sorted(d.get("by_arm", {}).items()))
    r = d.get("rehearsal", {})
    lines = [f"  dreaming: {d['candidates']} dreams written ({arms or 'none usable'}), "
             f"{d['kept']} kept by {d['selection']} selection, {d['replayed']} earlier "
             f"replayed; diversified by {d['diversifier']}; {r.get('steps')} rehearsal "
             f"steps, loss {r.get('loss_first_quarter')} → {r.get('loss_last_quarter')}"]
    undone = d.get("undone")
    if undone:
        lines.append("  dreaming undone: the gate rejected seeding and dreaming together ("
                     + "; ".join(undone.get("reasons", [])) + "), so it judged seeding's "
                     "expert alone")
    if d.get("undo_skipped"):
        lines.append(f"  dreaming not undone: {d['undo_skipped']}")
    trials = d.get("trials") or []
    if trials:
        won = sum(t["reward"] > 0 for t in trials)
        lines.append(f"  dream trials: {won} of {len(trials)} improved the held-out probes")
    return lines


def policy_lines(history: list[dict]) -> list[str]:
    """The dream policy over the last nights, oldest first: one row per writer."""
    if not history:
        return []
    history = history[::-1]
    lines = [f"  dream policy, last {len(history)} night(s) (sleep "
             + " ".join(f"#{h['sleep_id']}" for h in history) + "):"]
    for arm in history[-1]["probabilities"]:
        values = " ".join(f"{h['probabilities'].get(arm, 0):.2f}" for h in history)
        lines.append(f"    {arm:<20} {values}")
    return lines
