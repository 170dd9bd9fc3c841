"""`phonebatch schedules`: list the schedules and fire one now."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import typer

from config.schedules import Schedule, ScheduleError, find, load_schedules, utc
from jobs.cli.outcome import announce
from jobs.cli.shared import EXIT_INVALID, CliError, JsonOpt, WaitOpt, app, open_store, out, settings
from jobs.operations.destinations import destinations
from jobs.operations.options import default_guard
from jobs.operations.scheduling import fire, last_fire
from jobs.store.connection import RedisUrlError, client_for

schedules_app = typer.Typer(
    help="The schedules in PHONEBATCH_SCHEDULES (default config/schedules.toml).",
    no_args_is_help=True,
)
app.add_typer(schedules_app, name="schedules")


def load() -> list[Schedule]:
    """The schedules in PHONEBATCH_SCHEDULES, or exit 2 with what is wrong in them."""
    try:
        return load_schedules(settings().schedules_path)
    except ScheduleError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None


@schedules_app.command("list")
def schedules_list(as_json: JsonOpt = False) -> None:
    """Each schedule and its next run, in its own time zone and in UTC."""
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    lasts = _last_fires([s.name for s in load()])
    for s in load():
        upcoming = s.next_run(now)
        source = f"file {s.file}" if s.file else f"{len(s.ids or [])} ids, set {s.set}"
        rows.append(
            {"name": s.name, "cron": s.cron, "timezone": s.timezone, "source": source,
             "next_run": upcoming.isoformat(), "next_run_utc": utc(upcoming).isoformat(),
             "priority": s.priority, "last": lasts.get(s.name) or None}
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
        if last := row["last"]:
            said = f"batch {last['batch_id']}" if last["outcome"] == "fired" else last["reason"]
            out.print(f"  last: {last['outcome']} at {last['at']}: {said}", markup=False)


def _last_fires(names: list[str]) -> dict[str, dict[str, str]]:
    """Each schedule's last firing, if Redis answers (the list needs no Redis)."""
    try:
        client = client_for(settings(), socket_connect_timeout=1, socket_timeout=2)
        return {name: last_fire(client, name) for name in names}
    except (redis.RedisError, RedisUrlError):
        return {}


@schedules_app.command("run")
def schedules_run(
    name: str,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Fire a schedule now, exactly as beat would (its batch is tagged schedule:NAME)."""
    try:
        schedule = find(load(), name)
    except ScheduleError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None
    store = open_store()
    s = settings()
    batch_id = fire(
        schedule, base_dir=Path(s.schedules_path).parent, store=store, broker=store.client,
        queue=s.queue, default_webhook=s.webhook_url, rules=destinations(s),
        guard=default_guard(s),
    )  # fmt: skip
    assert batch_id is not None  # only a slot can be fired already
    total = store.status(batch_id)
    announce(store, batch_id, total.counts.total if total else 0, wait=wait, as_json=as_json)
