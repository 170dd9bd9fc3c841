"""Commands that look at batches: status, report and list."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.markup import escape

from jobs.batch.text import printable
from jobs.cli.progress import watch
from jobs.cli.shared import (
    EXIT_INVALID,
    CliError,
    JsonOpt,
    app,
    err,
    find_batch,
    open_store,
    out,
    settings,
)
from jobs.operations.recovery import is_stalled
from jobs.queue.priority import Priority
from jobs.store.interface import BatchMode, BatchState, BatchStatus, ItemStatus, iter_items
from jobs.store.pace import PaceReading, read_paces
from jobs.store.report import (
    ITEM_HEADER,
    iso_time,
    item_line,
    status_dict,
    summary_line,
    write_csv,
    write_json,
)


def _print_status(status: BatchStatus) -> None:
    name, source = escape(printable(status.name)), escape(printable(status.source))
    out.print(f"[bold]Batch {status.batch_id}[/]  {name}  ({source})", markup=True)
    out.print(f"  state     {status.state.value}")
    if status.state is BatchState.PAUSED:
        since = f" since {iso_time(status.paused_at)}" if status.paused_at else ""
        out.print(
            f"  paused    no new request starts{since}; go on with: "
            f"phonebatch continue {status.batch_id}"
        )
        if status.paused_reason:
            out.print(f"  because   {printable(status.paused_reason)}")
    _print_guardrails(status)
    out.print(f"  progress  {summary_line(status)}")
    out.print(f"  created   {iso_time(status.created_at)}")
    if status.finished_at:
        out.print(f"  finished  {iso_time(status.finished_at)}")
    if status.parent_id:
        out.print(f"  retry of  {status.parent_id}")
    if status.retried_by:
        out.print(f"  retried   {', '.join(status.retried_by)}")
    if status.mode is not BatchMode.UPDATE:
        out.print(f"  mode      {status.mode.value}")
    if status.rollback_of:
        out.print(f"  undoes    {status.rollback_of}")
    if status.selecting:
        out.print("  selecting a worker is listing the numbers that match")
    if status.halted_reason:
        out.print(f"  stopped   {printable(status.halted_reason)}")
    if status.resumed:
        out.print(
            f"  resumed   by the workers, {status.resumed} time(s): it had stalled "
            f"(last {iso_time(status.resumed_at)})"
        )


def _print_guardrails(status: BatchStatus) -> None:
    """Its priority, canary and failure guard, where they are not the defaults."""
    if status.priority is not Priority.NORMAL:
        out.print(f"  priority  {status.priority.value}")
    if status.canary:
        out.print(f"  canary    {status.canary} numbers first, then a pause")
    if not status.guard.on and status.mode is not BatchMode.DRY_RUN:
        out.print("  guard     off: it never pauses itself on failures")


@app.command()
def status(
    batch_id: str,
    as_json: JsonOpt = False,
    watch_it: Annotated[
        bool, typer.Option("--watch", help="Follow it live (rate, ETA) until it ends.")
    ] = False,
) -> None:
    """A batch's state and counts; says so when a batch has stalled."""
    store = open_store()
    current = find_batch(store, batch_id)
    if watch_it and not current.done:
        current = watch(store, batch_id, console=err)
    stalled = is_stalled(store.client, settings().queue, current, settings().claim_lease)
    if as_json:
        out.print_json(data=status_dict(current) | {"stalled": stalled})
        return
    _print_status(current)
    if stalled:
        out.print(
            f"  [yellow]stalled[/]   {current.counts.pending} items wait and no task is left "
            f"for them: run `phonebatch resume {batch_id}`",
            markup=True,
        )
    if not current.done:
        for reading in read_paces(store.client):
            out.print(f"  pace      {pace_line(reading)}", markup=False)


def pace_line(reading: PaceReading) -> str:
    """The shared pace toward one API, as `status` shows it beside a running batch."""
    parts = [f"{reading.rate:.1f} requests/s" if reading.rate else "no pace set yet"]
    if reading.held_for > 0:
        parts.append(f"every worker holds {reading.held_for:.1f} s more (429s kept coming)")
    if reading.learned is not None and reading.learned_age is not None:
        parts.append(f"learned {reading.learned:.1f}/s from its 429s {_ago(reading.learned_age)}")
    return f"{reading.api}: " + "; ".join(parts)


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


@app.command()
def report(
    batch_id: str,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Only items with this status (repeatable).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to a file instead of stdout.")
    ] = None,
) -> None:
    """Every item of a batch: table, JSON or CSV, written as a stream."""
    if fmt not in ("table", "json", "csv"):
        raise CliError(f"--format {fmt!r}: use table, json or csv", EXIT_INVALID)
    wanted = _statuses(only)
    store = open_store()
    current = find_batch(store, batch_id)
    items = iter_items(store, batch_id, current.counts.total, only=wanted)
    if output is None:
        _write_report(fmt, current, items, sys.stdout)
        return
    with output.open("w", encoding="utf-8", newline="") as stream:
        _write_report(fmt, current, items, stream)
    err.print(f"Report written to {output}")


def _statuses(only: list[str] | None) -> frozenset[ItemStatus] | None:
    if not only:
        return None
    try:
        return frozenset(ItemStatus(s) for s in only)
    except ValueError:
        allowed = ", ".join(s.value for s in ItemStatus)
        raise CliError(f"--only {only!r}: use {allowed}", EXIT_INVALID) from None


def _write_report(fmt: str, current: BatchStatus, items: Any, stream: TextIO) -> None:
    if fmt == "json":
        write_json(current, items, stream)
    elif fmt == "csv":
        write_csv(items, stream)
    else:
        stream.write(f"Batch {current.batch_id} {current.state.value}: {summary_line(current)}\n")
        stream.write(ITEM_HEADER + "\n")
        for record in items:
            stream.write(item_line(record) + "\n")


@app.command("list")
def list_batches(
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Recent batches, newest first."""
    batches = open_store().list_batches(0, limit)
    if as_json:
        out.print_json(data=[status_dict(b) for b in batches])
        return
    if not batches:
        out.print("No batches yet.")
        return
    for b in batches:
        out.print(
            f"{b.batch_id}  {b.state.value:<9}  {iso_time(b.created_at)}  "
            f"{printable(b.source):<12} {printable(b.name)}  —  {summary_line(b)}",
            markup=False,
        )
