"""The `phonebatch` command.

Readable output for people, `--json` for scripts. Errors are one line on stderr
(`--debug` shows the traceback). Exit codes: 0 done, 1 a batch had failures or a
service could not be reached, 2 bad input or usage.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import redis
import typer
from pydantic import ValidationError
from rich.console import Console

from config import Settings, load_settings
from config.schedules import Schedule, ScheduleError, find, load_schedules, utc
from jobs.intake import Intake, parse_assignments, read_batch
from jobs.models import PROVIDERS
from jobs.producer import BatchOptions, submit_batch, submit_selection
from jobs.progress import watch
from jobs.recovery import is_stalled
from jobs.recovery import resume as resume_batch
from jobs.report import (
    ITEM_HEADER,
    iso_time,
    item_line,
    status_dict,
    summary_line,
    write_csv,
    write_json,
)
from jobs.retries import NothingToRetry, retry_failed
from jobs.rollback import NothingToRollBack, submit_rollback
from jobs.scheduling import fire
from jobs.selection import parse_conditions
from jobs.sources import InputError, detect_format
from jobs.store import (
    BatchMode,
    BatchState,
    BatchStatus,
    ItemStatus,
    StoreUnavailable,
    iter_items,
)
from jobs.store_redis import RedisReportStore
from jobs.urls import safe_url

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

app = typer.Typer(
    name="phonebatch",
    help="Bulk updates for Vapi phone numbers: validate, submit, watch, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_state: dict[str, Any] = {"debug": False, "settings": None}


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def settings() -> Settings:
    if _state["settings"] is None:
        _state["settings"] = load_settings()
    value: Settings = _state["settings"]
    return value


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    _state["debug"] = debug


# --- shared pieces ---------------------------------------------------------------------

FileArg = Annotated[Path, typer.Argument(help="A CSV, JSON or JSONL batch file ('-' for stdin).")]
ProviderOpt = Annotated[
    str | None,
    typer.Option("--provider", help=f"Provider for rows without one: {', '.join(PROVIDERS)}."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="FIELD=VALUE given to every row (a row's own value wins)."),
]
FormatOpt = Annotated[
    str | None, typer.Option("--format", help="csv, json or jsonl (default: by extension).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@contextmanager
def _open_input(path: Path) -> Any:
    if str(path) == "-":
        yield sys.stdin
        return
    try:
        stream = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a batch file") from None
    with stream:
        yield stream


def _read(path: Path, fmt: str | None, provider: str | None, sets: list[str] | None) -> Intake:
    if provider is not None and provider not in PROVIDERS:
        raise InputError(f"--provider {provider!r}: use one of {', '.join(PROVIDERS)}")
    overrides = parse_assignments(sets or [])
    file_format = detect_format(path.name if str(path) != "-" else "", fmt)
    with _open_input(path) as stream:
        try:
            return read_batch(stream, file_format, provider=provider, overrides=overrides)
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _print_errors(intake: Intake, console: Console) -> None:
    console.print(
        f"[red]✗[/] {intake.bad_rows} of {intake.rows} rows are invalid; nothing was sent:"
    )
    for error in intake.errors:
        console.print(f"  {error}", markup=False)
    if intake.errors_not_listed:
        console.print(f"  ... and {intake.errors_not_listed} more invalid rows not listed")


def _errors_json(intake: Intake) -> dict[str, Any]:
    return {
        "valid": intake.ok,
        "rows": intake.rows,
        "invalid_rows": intake.bad_rows,
        "errors": [e.as_dict() for e in intake.errors],
    }


def _store() -> RedisReportStore:
    s = settings()
    client = redis.Redis.from_url(s.redis_url, socket_connect_timeout=3)
    store = RedisReportStore(client, retention_seconds=s.retention_seconds)
    try:
        store.ping()
    except StoreUnavailable as exc:
        raise CliError(
            f"cannot reach Redis at {safe_url(s.redis_url)} ({exc}). Start one with "
            "`docker compose up -d redis` or `redis-server`, or point REDIS_URL at yours."
        ) from None
    return store


def _status(store: RedisReportStore, batch_id: str) -> BatchStatus:
    status = store.status(batch_id)
    if status is None:
        raise CliError(
            f"no batch {batch_id!r} (reports are kept "
            f"{settings().report_retention_days:g} days; `phonebatch list` shows what there is)",
            EXIT_INVALID,
        )
    return status


def _exit_code(status: BatchStatus) -> int:
    c = status.counts
    return EXIT_OK if c.failed == 0 and c.cancelled == 0 and c.pending == 0 else EXIT_FAILED


def _print_status(status: BatchStatus) -> None:
    out.print(f"[bold]Batch {status.batch_id}[/]  {status.name}  ({status.source})")
    out.print(f"  state     {status.state.value}")
    if status.state is BatchState.PAUSED:
        since = f" since {iso_time(status.paused_at)}" if status.paused_at else ""
        out.print(
            f"  paused    no new request starts{since}; go on with: "
            f"phonebatch continue {status.batch_id}"
        )
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
        out.print(f"  stopped   {status.halted_reason}", markup=False)


# --- commands ------------------------------------------------------------------------------


@app.command()
def validate(
    file: FileArg,
    provider: ProviderOpt = None,
    sets: SetOpt = None,
    fmt: FormatOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check every row of a batch file. Needs no Redis and no API key."""
    intake = _read(file, fmt, provider, sets)
    if as_json:
        out.print_json(data=_errors_json(intake))
    elif intake.ok:
        providers = Counter(json.loads(i.body)["provider"] for i in intake.items)
        mix = ", ".join(f"{p} {n}" for p, n in sorted(providers.items()))
        out.print(f"[green]✓[/] {intake.rows} rows, all valid ({mix})")
    else:
        _print_errors(intake, out)
    raise typer.Exit(EXIT_OK if intake.ok else EXIT_INVALID)


@app.command()
def submit(
    file: Annotated[
        Path | None,
        typer.Argument(help="A CSV, JSON or JSONL batch file ('-' for stdin); or use --where."),
    ] = None,
    provider: ProviderOpt = None,
    sets: SetOpt = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where", help="FIELD=VALUE: every number that has it now (repeatable); no FILE."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read each number and report what would change.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Send even to numbers already in the target state.")
    ] = False,
    no_read: Annotated[
        bool,
        typer.Option(
            "--no-read", help="Do not read numbers first: no skipping, no snapshot, no rollback."
        ),
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show progress until the batch ends.")
    ] = False,
    as_json: JsonOpt = False,
    name: Annotated[str | None, typer.Option("--name", help="A name for the batch.")] = None,
    fmt: FormatOpt = None,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="POST the signed summary here when done.")
    ] = None,
) -> None:
    """Validate a batch whole, then queue one update per number (or select them: --where)."""
    if dry_run and no_read:
        raise CliError("--dry-run reads every number: it cannot go with --no-read", EXIT_INVALID)
    options = BatchOptions(
        mode=BatchMode.DRY_RUN if dry_run else BatchMode.UPDATE, force=force, read_first=not no_read
    )
    if where:
        _submit_selection(where, sets, options, name, webhook, wait=wait, as_json=as_json)
        return
    if file is None:
        raise CliError("give a batch FILE, or --where conditions to select numbers", EXIT_INVALID)
    intake = _read(file, fmt, provider, sets)
    if not intake.ok:
        if as_json:
            out.print_json(data=_errors_json(intake))
        else:
            _print_errors(intake, err)
        raise typer.Exit(EXIT_INVALID)
    store = _store()
    batch_id = submit_batch(
        intake.items,
        store=store,
        broker=store.client,
        queue=settings().queue,
        name=name or file.name,
        source="cli",
        webhook_url=webhook or settings().webhook_url,
        options=options,
    )
    _announce(store, batch_id, len(intake.items), wait=wait, as_json=as_json)


def _submit_selection(
    where: list[str],
    sets: list[str] | None,
    options: BatchOptions,
    name: str | None,
    webhook: str | None,
    *,
    wait: bool,
    as_json: bool,
) -> None:
    conditions = parse_conditions(where)
    values = parse_assignments(sets or [])
    if not values:
        raise CliError("--where needs --set: the values to give the numbers found", EXIT_INVALID)
    store = _store()
    batch_id = submit_selection(
        conditions, values, store=store, broker=store.client, queue=settings().queue,
        name=name or "where " + " and ".join(where), source="cli",
        webhook_url=webhook or settings().webhook_url, options=options,
    )  # fmt: skip
    if not as_json and not wait:
        err.print("A worker lists the numbers and queues those that match.")
    _announce(store, batch_id, 0, wait=wait, as_json=as_json)


@app.command()
def rollback(
    batch_id: str,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite numbers changed since the batch ran.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until it ends.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Put back the values BATCH_ID overwrote, only the fields it touched."""
    store = _store()
    _status(store, batch_id)
    try:
        child, plan = submit_rollback(store, settings().queue, batch_id, force=force)
    except NothingToRollBack as exc:
        raise CliError(str(exc)) from None
    for note in plan.left_out[:20]:
        err.print(f"not restored: {note}", markup=False)
    _announce(store, child, len(plan.items), wait=wait, as_json=as_json)


def _announce(
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
            out.print(f"Stopped sending: {final.halted_reason}", markup=False)
        if final.mode is BatchMode.DRY_RUN:
            _print_dry_run(store, final)
        else:
            _print_skips(store, final)
        _print_failures(store, final)
    raise typer.Exit(_exit_code(final))


def _print_dry_run(store: RedisReportStore, status: BatchStatus, limit: int = 50) -> None:
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
            out.print(f"row {record.row}  {record.number_id}", markup=False)
            for change in found:
                before = json.dumps(change["before"])
                after = json.dumps(change["after"])
                out.print(f"    {change['field']}: {before} → {after}", markup=False)
    if would > shown:
        out.print(
            f"... and {would - shown} more: phonebatch report {status.batch_id} --format json"
        )
    out.print(f"Dry run: {would} numbers would change, {right} are already in the target state.")


def _print_skips(store: RedisReportStore, status: BatchStatus, limit: int = 20) -> None:
    if not status.counts.skipped:
        return
    reasons = Counter(
        str(r.extra.get("reason", "skipped"))
        for r in iter_items(store, status.batch_id, status.counts.total)
        if r.status is ItemStatus.SKIPPED
    )
    for reason, count in reasons.most_common(limit):
        out.print(f"Skipped {count}: {reason}", markup=False)


def _print_failures(store: RedisReportStore, status: BatchStatus, limit: int = 20) -> None:
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
        out.print(f"  row {record.row} ({record.number_id}): {record.error}", markup=False)
    out.print(f"Send them again with: phonebatch retry {status.batch_id}")


@app.command()
def status(
    batch_id: str,
    as_json: JsonOpt = False,
    watch_it: Annotated[
        bool, typer.Option("--watch", help="Follow it live (rate, ETA) until it ends.")
    ] = False,
) -> None:
    """A batch's state and counts; says so when a batch has stalled."""
    store = _store()
    current = _status(store, batch_id)
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
            f"for them: run `phonebatch resume {batch_id}`"
        )


@app.command()
def cancel(batch_id: str, as_json: JsonOpt = False) -> None:
    """Stop a batch: no request starts later; requests in flight finish and are recorded."""
    store = _store()
    _status(store, batch_id)
    final = store.cancel(batch_id)
    done = final is not None and final.state is BatchState.CANCELLED
    lines = [f"Batch {batch_id} cancelled"]
    if final is not None and final.counts.pending:
        lines.append(f"  {final.counts.pending} requests in flight will finish and be recorded")
    _changed(batch_id, final, done, lines, as_json)


@app.command()
def pause(batch_id: str, as_json: JsonOpt = False) -> None:
    """Hold a batch: no new request starts; requests in flight finish. Undo with continue."""
    store = _store()
    _status(store, batch_id)
    final = store.pause(batch_id)
    done = final is not None and final.state is BatchState.PAUSED
    lines = [f"Batch {batch_id} paused", f"  go on with: phonebatch continue {batch_id}"]
    _changed(batch_id, final, done, lines, as_json)


@app.command("continue")
def continue_(batch_id: str, as_json: JsonOpt = False) -> None:
    """Let a paused batch go on: its held items are sent."""
    store = _store()
    _status(store, batch_id)
    answer = store.continue_batch(batch_id, settings().queue)
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
def retry(
    batch_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until it ends.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """A new batch of the failed items of BATCH_ID, linked to it both ways."""
    store = _store()
    _status(store, batch_id)
    try:
        made = retry_failed(store, settings().queue, batch_id)
    except NothingToRetry as exc:
        raise CliError(str(exc)) from None
    if made.rows_without_secrets:
        rows = ", ".join(str(r) for r in made.rows_without_secrets[:20])
        err.print(
            f"{len(made.rows_without_secrets)} failed items carried secret fields, which are "
            f"not kept once sent; submit them again from your file (rows {rows})",
            markup=False,
        )
    _announce(store, made.batch_id, made.count, wait=wait, as_json=as_json)


@app.command()
def resume(batch_id: str) -> None:
    """Re-enqueue exactly the items of a stalled batch that have no task left."""
    store = _store()
    current = _status(store, batch_id)
    if current.done:
        raise CliError(f"batch {batch_id} is {current.state.value}: nothing to resume")
    if current.state is BatchState.PAUSED:
        raise CliError(f"batch {batch_id} is paused: run phonebatch continue {batch_id}")
    done = resume_batch(store, store.client, settings().queue, batch_id, settings().claim_lease)
    out.print(
        f"Batch {batch_id}: {done.reenqueued} items re-enqueued, "
        f"{done.restored} tasks of stopped workers put back on the queue"
    )


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
    store = _store()
    current = _status(store, batch_id)
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
    batches = _store().list_batches(0, limit)
    if as_json:
        out.print_json(data=[status_dict(b) for b in batches])
        return
    if not batches:
        out.print("No batches yet.")
        return
    for b in batches:
        out.print(
            f"{b.batch_id}  {b.state.value:<9}  {iso_time(b.created_at)}  "
            f"{b.source:<12} {b.name}  —  {summary_line(b)}",
            markup=False,
        )


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def worker(
    ctx: typer.Context,
    processes: Annotated[
        int | None,
        typer.Option(
            "--processes",
            "-p",
            min=1,
            help="Worker processes to run (default: two per CPU core, at most 8).",
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Requests in flight per process.")
    ] = 8,
    pool: Annotated[str, typer.Option("--pool", help="Celery pool of each process.")] = "threads",
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO",
) -> None:
    """Start a worker: several processes, each a Celery worker with its own threads.
    Other options go to `celery worker` as they are."""
    current = settings()
    if current.vapi_api_key is None:
        raise CliError(
            "VAPI_API_KEY is not set: a worker needs it to call the Vapi API", EXIT_INVALID
        )
    from worker.launcher import Supervisor, child_argv, child_env, default_processes

    count = processes if processes is not None else default_processes()
    if count > 1:
        if any(a in ("-n", "--hostname") or a.startswith("--hostname=") for a in ctx.args):
            raise CliError("--hostname names one process: use it with --processes 1", EXIT_INVALID)
        from worker.logs import configure

        configure(loglevel, current.log_format)  # the launcher's own lines: restarts
        slots = [
            (
                child_argv(
                    i, concurrency=concurrency, pool=pool, loglevel=loglevel, extra=ctx.args
                ),
                child_env(i, os.environ, current.metrics_port),
            )
            for i in range(count)
        ]
        raise typer.Exit(Supervisor(slots).run())
    from worker.app import app as celery_app

    argv = [
        "worker", f"--concurrency={concurrency}", f"--pool={pool}", f"--loglevel={loglevel}",
        f"--queues={current.queue}", *ctx.args,
    ]  # fmt: skip
    celery_app.worker_main(argv)


@app.command()
def simulator(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8787,
    numbers: Annotated[int, typer.Option(help="How many numbers to generate.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed for generated ids and randomness.")] = 0,
    numbers_file: Annotated[
        Path | None, typer.Option(help="A JSON list of phone-number objects to start with.")
    ] = None,
    api_key: Annotated[str, typer.Option(help="The key the simulator accepts.")] = "sim-key",
    latency_ms: Annotated[float, typer.Option(help="Added to every answer.")] = 0.0,
    jitter_ms: Annotated[float, typer.Option(help="Latency varies by up to this.")] = 0.0,
    rate_limit: Annotated[
        float, typer.Option(help="Requests/s it accepts before answering 429 (0: no limit).")
    ] = 0.0,
    rate_limit_mode: Annotated[
        Literal["sliding", "fixed", "bucket-burst", "bucket"],
        typer.Option(
            help="How the limit counts: a sliding or a fixed 1-s window, or a token bucket "
            "that saves up 1 s of requests (bucket-burst) or rate_burst of --faults (bucket)."
        ),
    ] = "bucket",
    faults: Annotated[
        str | None,
        typer.Option(help='More faults as JSON, e.g. \'{"p5xx": 0.1, "always_404": ["id"]}\'.'),
    ] = None,
) -> None:
    """Run the local Vapi simulator (never the real API)."""
    from simulator.app import SimulatorConfig, serve
    from simulator.faults import FaultConfig
    from simulator.state import SimulatorState, generate_numbers

    try:
        extra = json.loads(faults) if faults else {}
        fault_config = FaultConfig.from_dict(
            {"latency_ms": latency_ms, "jitter_ms": jitter_ms, "rate_limit": rate_limit}
            | {"rate_limit_mode": rate_limit_mode, "seed": seed}
            | extra
        )
    except (TypeError, ValueError) as exc:
        raise CliError(f"--faults: {exc}", EXIT_INVALID) from None

    state = SimulatorState()
    if numbers_file is not None:
        state.load(json.loads(numbers_file.read_text("utf-8")))
    else:
        state.load(generate_numbers(numbers, seed))
    err.print(f"Vapi simulator on http://{host}:{port} with {len(state.numbers)} numbers")
    serve(SimulatorConfig(api_key=api_key, faults=fault_config), state, host, port)


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    open_on_localhost: Annotated[
        bool,
        typer.Option(
            "--open-on-localhost",
            help="Run without PHONEBATCH_API_TOKEN: anyone on this machine may use it.",
        ),
    ] = False,
) -> None:
    """Serve the HTTP API (docs at /docs)."""
    import uvicorn

    from jobs.api import create_api

    s = settings()
    token = s.api_token.get_secret_value() if s.api_token else None
    if token is None:
        if not open_on_localhost:
            raise CliError(
                "PHONEBATCH_API_TOKEN is not set: set it, or pass --open-on-localhost to run "
                "without one on a loopback address",
                EXIT_INVALID,
            )
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise CliError(
                "--open-on-localhost only binds 127.0.0.1, ::1 or localhost", EXIT_INVALID
            )
    store = _store()
    err.print(f"phonebatch API on http://{host}:{port} (docs at /docs)")
    uvicorn.run(create_api(s, store, token=token), host=host, port=port, log_level="warning")


schedules_app = typer.Typer(
    help="The schedules in PHONEBATCH_SCHEDULES (default config/schedules.toml).",
    no_args_is_help=True,
)
app.add_typer(schedules_app, name="schedules")


def _schedules() -> list[Schedule]:
    try:
        return load_schedules(settings().schedules_path)
    except ScheduleError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None


@schedules_app.command("list")
def schedules_list(as_json: JsonOpt = False) -> None:
    """Each schedule and its next run, in its own time zone and in UTC."""
    now = datetime.now(UTC)
    rows = []
    for s in _schedules():
        upcoming = s.next_run(now)
        source = f"file {s.file}" if s.file else f"{len(s.ids or [])} ids, set {s.set}"
        rows.append(
            {"name": s.name, "cron": s.cron, "timezone": s.timezone, "source": source,
             "next_run": upcoming.isoformat(), "next_run_utc": utc(upcoming).isoformat()}
        )  # fmt: skip
    if as_json:
        out.print_json(data=rows)
        return
    if not rows:
        out.print(f"No schedules in {settings().schedules_path}.")
    for row in rows:
        out.print(
            f"{row['name']}: {row['cron']} ({row['timezone']}) — next {row['next_run']} "
            f"= {row['next_run_utc']} — {row['source']}",
            markup=False,
        )


@schedules_app.command("run")
def schedules_run(
    name: str,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until it ends.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fire a schedule now, exactly as beat would (its batch is tagged schedule:NAME)."""
    try:
        schedule = find(_schedules(), name)
    except ScheduleError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None
    store = _store()
    s = settings()
    batch_id = fire(
        schedule, base_dir=Path(s.schedules_path).parent, store=store, broker=store.client,
        queue=s.queue, default_webhook=s.webhook_url,
    )  # fmt: skip
    assert batch_id is not None  # only a slot can be fired already
    total = store.status(batch_id)
    _announce(store, batch_id, total.counts.total if total else 0, wait=wait, as_json=as_json)


@app.command()
def beat(
    schedule_db: Annotated[Path, typer.Option(help="Where beat remembers its last runs.")] = Path(
        ".phonebatch-beat"
    ),
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO",
) -> None:
    """Run the schedules (Celery beat). A slot fires once even with two beats running."""
    schedules = _schedules()
    from worker.app import app as celery_app
    from worker.beat import beat_schedule

    celery_app.conf.beat_schedule = beat_schedule(schedules)
    err.print(f"phonebatch beat: {len(schedules)} schedules from {settings().schedules_path}")
    celery_app.Beat(
        scheduler="worker.beat.SlotScheduler",
        schedule=str(schedule_db),
        loglevel=loglevel,
        max_interval=30,
    ).run()


@app.command()
def demo(
    numbers: Annotated[int, typer.Option(help="How many numbers to move.")] = 200,
) -> None:
    """Run the whole pipeline locally: simulator, worker, a 200-number batch."""
    from jobs.demo import run_demo

    raise typer.Exit(run_demo(settings(), numbers=numbers, out=out, err=err))


def main() -> None:
    try:
        app()
    except InputError as exc:
        _fail(str(exc), EXIT_INVALID, exc)
    except ValidationError as exc:  # the settings: environment or .env
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        _fail(f"bad configuration: {problems}", EXIT_INVALID, exc)
    except CliError as exc:
        _fail(str(exc), exc.code, exc)
    except redis.ConnectionError as exc:
        _fail(f"lost the connection to Redis at {safe_url(settings().redis_url)}: {exc}", 1, exc)
    except KeyboardInterrupt:
        _fail("interrupted", 130, None)
    except Exception as exc:  # the last line of defence: one line, not a traceback
        _fail(f"unexpected error: {exc!r} (run with --debug for the traceback)", 1, exc)


def _fail(message: str, code: int, exc: BaseException | None) -> None:
    if _state["debug"] and exc is not None:
        raise exc
    err.print(f"phonebatch: {message}", markup=False)
    sys.exit(code)


if __name__ == "__main__":
    main()
