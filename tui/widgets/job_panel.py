"""Visible progress of subcommands running in their own process (see tui/jobs.py)."""

from __future__ import annotations

from textual.containers import Vertical
from textual.widgets import Label, ProgressBar

from pocketsleep.text import one_line

from ..jobs import Job

KEEP_FINISHED_S = 8.0


class JobView(Vertical):
    """One job: title, a progress bar (moving until a percentage shows up), last line."""

    def __init__(self, job: Job) -> None:
        super().__init__(classes="job", id=f"job-{job.id}")
        self.job = job

    def compose(self):
        yield Label(f"{self.job.title}: running", classes="job-title")
        yield ProgressBar(total=None, show_eta=False)
        yield Label("", classes="job-line")

    def on_job_output(self, message: Job.Output) -> None:
        message.stop()
        self.query_one(".job-line", Label).update(one_line(message.line, 200))
        if message.progress is not None:
            self.query_one(ProgressBar).update(total=1.0, progress=message.progress)

    def on_job_finished(self, message: Job.Finished) -> None:
        # Not stopped: the app hears it too, to notify and refresh the status bar.
        ok = message.returncode == 0
        bar = self.query_one(ProgressBar)
        if ok:
            bar.update(total=1.0, progress=1.0)
        self.set_class(not ok, "-failed")
        outcome = "done" if ok else f"failed (exit {message.returncode})"
        self.query_one(".job-title", Label).update(f"{self.job.title}: {outcome}")
        self.set_timer(KEEP_FINISHED_S, self._dismiss)

    async def _dismiss(self) -> None:
        parent = self.parent
        await self.remove()
        if isinstance(parent, JobPanel):
            parent.display = bool(parent.children)


class JobPanel(Vertical):
    """Holds one JobView per running (or just finished) job; hidden when empty."""

    def on_mount(self) -> None:
        self.display = False

    async def add(self, job: Job) -> JobView:
        view = JobView(job)
        self.display = True
        await self.mount(view)
        return view
