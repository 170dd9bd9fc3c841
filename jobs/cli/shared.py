"""What every command shares: the Typer app, the consoles, settings, errors, exit codes,
the common options and the way to the report store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from config import Settings, load_settings
from jobs.batch.models import PROVIDERS
from jobs.batch.urls import safe_url
from jobs.store.connection import RedisUrlError, client_for
from jobs.store.interface import BatchStatus, StoreUnavailable
from jobs.store.redis_store import RedisReportStore

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

app = typer.Typer(
    name="phonebatch",
    help="Bulk updates for Vapi phone numbers: validate, submit, watch, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# No markup unless a print asks for it: names, ids and errors come from users and APIs.
out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
state: dict[str, Any] = {"debug": False, "settings": None}


class CliError(Exception):
    """A command cannot go on: `main` prints the message on one line and exits `code`."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def settings() -> Settings:
    """The settings, read from the environment once per run."""
    if state["settings"] is None:
        state["settings"] = load_settings()
    value: Settings = state["settings"]
    return value


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    state["debug"] = debug


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
WaitOpt = Annotated[bool, typer.Option("--wait", help="Show progress until it ends.")]


def open_store() -> RedisReportStore:
    """The report store at REDIS_URL, or a one-line error saying how to start Redis."""
    s = settings()
    try:
        client = client_for(s, socket_connect_timeout=3)
    except RedisUrlError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None
    store = RedisReportStore(client, retention_seconds=s.retention_seconds)
    try:
        store.ping()
    except StoreUnavailable as exc:
        raise CliError(
            f"cannot reach Redis at {safe_url(s.redis_url)} ({exc}). Start one with "
            "`docker compose up -d redis` or `redis-server`, or point REDIS_URL at yours."
        ) from None
    return store


def find_batch(store: RedisReportStore, batch_id: str) -> BatchStatus:
    """The batch's status, or exit 2 saying there is no such batch."""
    status = store.status(batch_id)
    if status is None:
        raise CliError(
            f"no batch {batch_id!r} (reports are kept "
            f"{settings().report_retention_days:g} days; `phonebatch list` shows what there is)",
            EXIT_INVALID,
        )
    return status


def exit_code(status: BatchStatus) -> int:
    """0 when every item of a finished batch went through, else 1."""
    c = status.counts
    return EXIT_OK if c.failed == 0 and c.cancelled == 0 and c.pending == 0 else EXIT_FAILED
