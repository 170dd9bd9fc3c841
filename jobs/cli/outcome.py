"""What a new batch did: its id, or (with --wait) its progress, then its summary, the
changes of a dry run, the skips and the failures, and the exit code that says how it went."""

from __future__ import annotations

import json
from collections import Counter

import typer

from jobs.batch.text import printable
from jobs.cli.progress import paused_itself, watch
from jobs.cli.shared import EXIT_FAILED, EXIT_OK, err, exit_code, out
from jobs.store.interface import BatchMode, BatchStatus, ItemStatus, iter_items
from jobs.store.redis_store import RedisReportStore
from jobs.store.report import status_dict, summary_line


def announce(
    store: RedisReportStore, batch_id: str, count: int, *, wait: bool, as_json: bool
) -> None:
    """Print a new batch's id; with `wait`, its progress and summary, and exit 0 or 1."""
    if not wait:
        if as_json:
            out.print_json(data={"batch_id": batch_id})
        else:
            out.print(f"Batch {batch_id} queued: {count} numbers.")
            out.print(f"Follow it with: phonebatch status {batch_id}")
        return
    err.print(f"Batch {batch_id} queued: {count} numbers.")
    final = watch(store, batch_id, console=err)
    if as_json:
        out.print_json(data=status_dict(final))
    else:
        out.print(f"Batch {batch_id} {final.state.value}: {summary_line(final)}")
        if final.halted_reason:
            out.print(f"Stopped sending: {printable(final.halted_reason)}")
        if paused_itself(final):
            print_self_pause(final)
        if final.mode is BatchMode.DRY_RUN:
            print_dry_run(store, final)
        else:
            print_skips(store, final)
        print_failures(store, final)
    if paused_itself(final):
        # Waiting for a look, not ended: 0 while nothing it sent failed.
        raise typer.Exit(EXIT_FAILED if final.counts.failed else EXIT_OK)
    raise typer.Exit(exit_code(final))


def print_self_pause(status: BatchStatus) -> None:
    """Why the batch paused itself, and the ways on."""
    batch_id = status.batch_id
    out.print(f"Paused itself: {printable(status.paused_reason or status.paused_by or '')}")
    guard = " --no-guard" if status.paused_by == "guard" else ""
    out.print(f"  go on:        phonebatch continue {batch_id}{guard}")
    out.print(f"  stop it:      phonebatch cancel {batch_id}")
    if status.counts.succeeded:
        out.print(f"  undo so far:  phonebatch rollback {batch_id}")


def print_dry_run(store: RedisReportStore, status: BatchStatus, limit: int = 50) -> None:
    """The changes a dry run found, as a readable diff."""
    would, right, shown = 0, 0, 0
    for record in iter_items(store, status.batch_id, status.counts.total):
        found = record.extra.get("changes")
        if found is None:
            continue
        if not found:
            right += 1
            continue
        would += 1
        if shown < limit:
            shown += 1
            out.print(f"row {record.row}  {printable(record.number_id)}")
            for change in found:
                before = json.dumps(change["before"])
                after = json.dumps(change["after"])
                out.print(f"    {change['field']}: {before} → {after}", markup=False)
    if would > shown:
        out.print(
            f"... and {would - shown} more: phonebatch report {status.batch_id} --format json"
        )
    out.print(f"Dry run: {would} numbers would change, {right} are already in the target state.")


def print_skips(store: RedisReportStore, status: BatchStatus, limit: int = 20) -> None:
    if not status.counts.skipped:
        return
    reasons = Counter(
        str(r.extra.get("reason", "skipped"))
        for r in iter_items(store, status.batch_id, status.counts.total)
        if r.status is ItemStatus.SKIPPED
    )
    for reason, count in reasons.most_common(limit):
        out.print(f"Skipped {count}: {printable(reason)}")


def print_failures(store: RedisReportStore, status: BatchStatus, limit: int = 20) -> None:
    if not status.counts.failed:
        return
    out.print("Failed:")
    failed = iter_items(
        store, status.batch_id, status.counts.total, only=frozenset({ItemStatus.FAILED})
    )
    for n, record in enumerate(failed):
        if n == limit:
            out.print(f"  ... see all with: phonebatch report {status.batch_id} --only failed")
            break
        error = printable(record.error or "")
        out.print(f"  row {record.row} ({printable(record.number_id)}): {error}")
    out.print(f"Send them again with: phonebatch retry {status.batch_id}")
