"""Commands that stop a batch or let it go on: cancel, pause, continue and resume."""

from __future__ import annotations

from typing import Annotated

import typer

from jobs.cli.shared import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    JsonOpt,
    app,
    find_batch,
    open_store,
    out,
    settings,
)
from jobs.operations.recovery import resume as resume_batch
from jobs.store.interface import BatchState, BatchStatus
from jobs.store.report import status_dict, summary_line


@app.command()
def cancel(batch_id: str, as_json: JsonOpt = False) -> None:
    """Stop a batch: no request starts later; requests in flight finish and are recorded."""
    store = open_store()
    find_batch(store, batch_id)
    final = store.cancel(batch_id)
    done = final is not None and final.state is BatchState.CANCELLED
    lines = [f"Batch {batch_id} cancelled"]
    if final is not None and final.counts.pending:
        lines.append(f"  {final.counts.pending} requests in flight will finish and be recorded")
    _changed(batch_id, final, done, lines, as_json)


@app.command()
def pause(batch_id: str, as_json: JsonOpt = False) -> None:
    """Hold a batch: no new request starts; requests in flight finish. Undo with continue."""
    store = open_store()
    find_batch(store, batch_id)
    final = store.pause(batch_id)
    done = final is not None and final.state is BatchState.PAUSED
    lines = [f"Batch {batch_id} paused", f"  go on with: phonebatch continue {batch_id}"]
    _changed(batch_id, final, done, lines, as_json)


@app.command("continue")
def continue_(
    batch_id: str,
    as_json: JsonOpt = False,
    no_guard: Annotated[
        bool, typer.Option("--no-guard", help="Do not pause again on permanent failures.")
    ] = False,
) -> None:
    """Let a paused batch go on: its held items are sent."""
    store = open_store()
    find_batch(store, batch_id)
    answer = store.continue_batch(batch_id, settings().queue, no_guard=no_guard)
    final = answer[1] if answer else None
    state = final.state.value if final else ""
    went_on = bool(answer and answer[0])
    lines = [f"Batch {batch_id} continues ({state})"]
    _changed(batch_id, final, went_on, lines, as_json, f"Batch {batch_id} is not paused ({state})")


def _changed(
    batch_id: str,
    final: BatchStatus | None,
    done: bool,
    lines: list[str],
    as_json: bool,
    refused: str | None = None,
) -> None:
    """Say how a cancel, pause or continue went, and exit 0 if it changed the batch."""
    if final is None:
        raise CliError(f"no batch {batch_id!r}")
    if as_json:
        out.print_json(data=status_dict(final))
    elif done:
        out.print(f"{lines[0]}: {summary_line(final)}")
        for line in lines[1:]:
            out.print(line)
    else:
        said = refused or f"Batch {batch_id} had already {final.state.value}"
        out.print(f"{said}: {summary_line(final)}")
    raise typer.Exit(EXIT_OK if done else EXIT_FAILED)


@app.command()
def resume(batch_id: str) -> None:
    """Re-enqueue exactly the items of a stalled batch that have no task left."""
    store = open_store()
    current = find_batch(store, batch_id)
    if current.done:
        raise CliError(f"batch {batch_id} is {current.state.value}: nothing to resume")
    if current.state is BatchState.PAUSED:
        raise CliError(f"batch {batch_id} is paused: run phonebatch continue {batch_id}")
    done = resume_batch(store, store.client, settings().queue, batch_id, settings().claim_lease)
    out.print(
        f"Batch {batch_id}: {done.reenqueued} items re-enqueued, "
        f"{done.restored} tasks of stopped workers put back on the queue"
    )
