"""Live progress of a batch, polled from the report store until the batch ends."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from jobs.store.interface import BatchState, BatchStatus, ReportStore
from jobs.store.report import summary_line


class RateColumn(ProgressColumn):
    """The progress bar's speed column: items done per second."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text(f"{speed:,.0f}/s" if speed else "  -/s", style="cyan")


def _label(status: BatchStatus) -> str:
    if status.state is BatchState.PAUSED:
        return f"{status.batch_id} paused (phonebatch continue {status.batch_id})"
    return status.batch_id


SETTLE = 1.0  # a batch that paused itself: seconds without a new outcome before we stop


def paused_itself(status: BatchStatus) -> bool:
    """Paused by its canary or its failure guard: waiting for a person to look at it."""
    return status.state is BatchState.PAUSED and status.paused_by is not None


def watch(
    store: ReportStore, batch_id: str, *, console: Console, interval: float = 0.25
) -> BatchStatus:
    """Draw a progress bar until the batch is completed or cancelled, or paused itself
    (its canary is done, or its failure guard tripped) and its requests in flight have
    been recorded; a batch paused by hand is waited for (it says so). Returns its status."""
    current = store.status(batch_id)
    if current is None:
        raise LookupError(f"no batch {batch_id}")
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[counts]}"),
        console=console,
        transient=False,
    )
    total = current.counts.total
    settled_at: float | None = None  # when the outcomes of a self-paused batch last moved
    settled_done = -1
    try:
        with progress:
            task = progress.add_task(batch_id, total=total, counts="")
            while True:
                total = current.counts.total  # a selector batch learns its size later
                done = total - current.counts.pending
                progress.update(
                    task, total=total, completed=done, counts=summary_line(current),
                    description=_label(current),
                )  # fmt: skip
                if current.done:
                    return current
                if paused_itself(current):
                    if settled_at is None or done != settled_done:
                        settled_at, settled_done = time.monotonic(), done
                    elif time.monotonic() - settled_at >= SETTLE:
                        return current
                else:
                    settled_at = None
                time.sleep(interval)
                current = store.status(batch_id) or current
    except KeyboardInterrupt:
        console.print(
            f"Stopped watching; the batch goes on. See it with: phonebatch status {batch_id}"
        )
        raise
