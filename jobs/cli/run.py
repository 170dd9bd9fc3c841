"""`phonebatch worker` and `phonebatch beat`: the commands that start Celery.

The only module of `jobs` that imports `worker` (the import contract in pyproject.toml
names it as the one exception): everything else in `jobs` runs without the workers'
code, and `worker` builds on `jobs`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from jobs.cli import schedules
from jobs.cli.shared import EXIT_INVALID, CliError, app, err, settings


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
def beat(
    schedule_db: Annotated[Path, typer.Option(help="Where beat remembers its last runs.")] = Path(
        ".phonebatch-beat"
    ),
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO",
) -> None:
    """Run the schedules (Celery beat). A slot fires once even with two beats running."""
    found = schedules.load()
    from worker.app import app as celery_app
    from worker.beat import beat_schedule

    celery_app.conf.beat_schedule = beat_schedule(found)
    err.print(f"phonebatch beat: {len(found)} schedules from {settings().schedules_path}")
    celery_app.Beat(
        scheduler="worker.beat.SlotScheduler",
        schedule=str(schedule_db),
        loglevel=loglevel,
        max_interval=30,
    ).run()
