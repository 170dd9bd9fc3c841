"""Commands that read a batch or make one: validate, submit, retry and rollback."""

from __future__ import annotations

import io
import json
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console

from jobs.batch.intake import Intake, parse_assignments, read_batch
from jobs.batch.models import PROVIDERS
from jobs.batch.redaction import pairs_text
from jobs.batch.selection import parse_conditions, values_problems
from jobs.batch.sources import InputError, detect_format
from jobs.cli.outcome import announce
from jobs.cli.shared import (
    EXIT_INVALID,
    EXIT_OK,
    CliError,
    FileArg,
    FormatOpt,
    JsonOpt,
    ProviderOpt,
    SetOpt,
    WaitOpt,
    app,
    err,
    find_batch,
    open_store,
    out,
    settings,
)
from jobs.operations.destinations import destinations, webhook_problem
from jobs.operations.options import Choices, OptionError, batch_options, default_guard
from jobs.operations.producer import BatchOptions, submit_batch, submit_selection
from jobs.operations.retries import NothingToRetry, retry_failed
from jobs.operations.rollback import NothingToRollBack, submit_rollback

BatchFileArg = Annotated[
    Path | None,
    typer.Argument(help="A CSV, JSON or JSONL batch file ('-' for stdin); or use --where."),
]
WhereOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--where", help="FIELD=VALUE: every number that has it now (repeatable); no FILE."
    ),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Read each number and report what would change.")
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Send even to numbers already in the target state.")
]
NoReadOpt = Annotated[
    bool,
    typer.Option(
        "--no-read", help="Do not read numbers first: no skipping, no snapshot, no rollback."
    ),
]
SubmitWaitOpt = Annotated[bool, typer.Option("--wait", help="Show progress until the batch ends.")]
NameOpt = Annotated[str | None, typer.Option("--name", help="A name for the batch.")]
WebhookOpt = Annotated[
    str | None, typer.Option("--webhook", help="POST the signed summary here when done.")
]
PriorityOpt = Annotated[
    str,
    typer.Option(
        "--priority", help="high, normal or low: workers take higher-priority work first."
    ),
]
CanaryOpt = Annotated[
    int,
    typer.Option(
        "--canary", min=0, metavar="N",
        help="Send the first N numbers, then pause: check them, then continue or cancel.",
    ),
]  # fmt: skip
NoGuardOpt = Annotated[
    bool,
    typer.Option("--no-guard", help="Never pause by itself on a run of permanent failures (4xx)."),
]
GuardThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--guard-threshold", metavar="SHARE",
        help="Pause when more than this share of the last outcomes failed for good "
        "(default PHONEBATCH_GUARD_THRESHOLD, 0.2).",
    ),
]  # fmt: skip
GuardWindowOpt = Annotated[
    int | None,
    typer.Option(
        "--guard-window", metavar="K",
        help="The last K outcomes the guard looks at (default PHONEBATCH_GUARD_WINDOW, 50).",
    ),
]  # fmt: skip
AllowOverlapOpt = Annotated[
    bool,
    typer.Option(
        "--allow-overlap",
        help="Go ahead even if another running batch holds some of these numbers.",
    ),
]


@contextmanager
def _open_input(path: Path) -> Iterator[TextIO]:
    """The batch as text: a byte-order mark dropped, and bytes that are not UTF-8 kept as
    lone surrogates, which validation refuses with their row and column."""
    if str(path) == "-":
        yield io.TextIOWrapper(
            sys.stdin.buffer, encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
        return
    try:
        stream = path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a batch file") from None
    except OSError as exc:  # a symlink loop, no permission, ...
        raise InputError(f"{path}: cannot be read ({exc.strerror or 'error'})") from None
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
        f"[red]✗[/] {intake.bad_rows} of {intake.rows} rows are invalid; nothing was sent:",
        markup=True,
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
        out.print(f"[green]✓[/] {intake.rows} rows, all valid ({mix})", markup=True)
    else:
        _print_errors(intake, out)
    raise typer.Exit(EXIT_OK if intake.ok else EXIT_INVALID)


@app.command()
def submit(
    file: BatchFileArg = None,
    provider: ProviderOpt = None,
    sets: SetOpt = None,
    where: WhereOpt = None,
    dry_run: DryRunOpt = False,
    force: ForceOpt = False,
    no_read: NoReadOpt = False,
    wait: SubmitWaitOpt = False,
    as_json: JsonOpt = False,
    name: NameOpt = None,
    fmt: FormatOpt = None,
    webhook: WebhookOpt = None,
    priority: PriorityOpt = "normal",
    canary: CanaryOpt = 0,
    no_guard: NoGuardOpt = False,
    guard_threshold: GuardThresholdOpt = None,
    guard_window: GuardWindowOpt = None,
    allow_overlap: AllowOverlapOpt = False,
) -> None:
    """Validate a batch whole, then queue one update per number (or select them: --where)."""
    choices = Choices(
        dry_run=dry_run, force=force, read_first=not no_read, priority=priority,
        canary=canary, guard=not no_guard, guard_threshold=guard_threshold,
        guard_window=guard_window, allow_overlap=allow_overlap,
    )  # fmt: skip
    try:
        options = batch_options(choices, default_guard(settings()))
    except OptionError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None
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
    webhook_url = _checked_webhook(webhook)
    store = open_store()
    batch_id = submit_batch(
        intake.items, store=store, broker=store.client, queue=settings().queue,
        name=name or file.name, source="cli", webhook_url=webhook_url,
        options=options,
    )  # fmt: skip
    announce(store, batch_id, len(intake.items), wait=wait, as_json=as_json)


def _checked_webhook(given: str | None) -> str | None:
    """The batch's webhook URL (--webhook, else PHONEBATCH_WEBHOOK_URL), if it may be used."""
    url = given or settings().webhook_url
    if (problem := webhook_problem(url, destinations(settings()))) is not None:
        raise CliError(problem, EXIT_INVALID)
    return url


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
    if problems := values_problems(values):
        raise CliError(f"--set: {problems[0]}", EXIT_INVALID)
    webhook_url = _checked_webhook(webhook)
    store = open_store()
    batch_id = submit_selection(
        conditions, values, store=store, broker=store.client, queue=settings().queue,
        name=name or "where " + pairs_text(conditions), source="cli",
        webhook_url=webhook_url, options=options,
    )  # fmt: skip
    if not as_json and not wait:
        err.print("A worker lists the numbers and queues those that match.")
    announce(store, batch_id, 0, wait=wait, as_json=as_json)


@app.command()
def rollback(
    batch_id: str,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite numbers changed since the batch ran.")
    ] = False,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Put back the values BATCH_ID overwrote, only the fields it touched."""
    store = open_store()
    find_batch(store, batch_id)
    try:
        child, plan = submit_rollback(store, settings().queue, batch_id, force=force)
    except NothingToRollBack as exc:
        raise CliError(str(exc)) from None
    for note in plan.left_out[:20]:
        err.print(f"not restored: {note}", markup=False)
    announce(store, child, len(plan.items), wait=wait, as_json=as_json)


@app.command()
def retry(batch_id: str, wait: WaitOpt = False, as_json: JsonOpt = False) -> None:
    """A new batch of the failed items of BATCH_ID, linked to it both ways."""
    store = open_store()
    find_batch(store, batch_id)
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
    announce(store, made.batch_id, made.count, wait=wait, as_json=as_json)
