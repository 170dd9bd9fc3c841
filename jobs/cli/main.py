"""The `phonebatch` command.

Readable output for people, `--json` for scripts. Errors are one line on stderr
(`--debug` shows the traceback). Exit codes: 0 done, 1 a batch had failures or a
service could not be reached, 2 bad input or usage.

The commands live in the modules beside this one, by what they do; importing them
registers them on the one Typer app (`jobs.cli.shared.app`).
"""

from __future__ import annotations

import sys

import redis
from pydantic import ValidationError

from jobs.batch.sources import InputError
from jobs.batch.text import printable
from jobs.batch.urls import safe_url
from jobs.cli.shared import EXIT_INVALID, CliError, app, err, settings, state
from jobs.operations.producer import Overlap

# isort: off
# Importing a module registers its commands; `--help` lists them in this order.
from jobs.cli import submit, inspection, control, run, serve, schedules
# isort: on

COMMANDS = (submit, inspection, control, run, serve, schedules)


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
    except Overlap as exc:
        _refuse_overlap(exc)
    except redis.ConnectionError as exc:
        _fail(f"lost the connection to Redis at {safe_url(settings().redis_url)}: {exc}", 1, exc)
    except KeyboardInterrupt:
        _fail("interrupted", 130, None)
    except Exception as exc:  # the last line of defence: one line, not a traceback
        _fail(f"unexpected error: {exc!r} (run with --debug for the traceback)", 1, exc)


def _refuse_overlap(exc: Overlap, shown: int = 50) -> None:
    """The numbers other batches hold, and the ways on; exit 2."""
    if state["debug"]:
        raise exc
    err.print(f"phonebatch: refused: {exc}", markup=False)
    for number, holder in exc.held[:shown]:
        err.print(f"  {printable(number)}  held by batch {holder}", markup=False)
    if len(exc.held) > shown:
        err.print(f"  ... and {len(exc.held) - shown} more", markup=False)
    holders = sorted({holder for _, holder in exc.held})
    err.print(
        f"Submit it again once {'they end' if len(holders) > 1 else 'it ends'} (phonebatch "
        f"status {holders[0]}), or with --allow-overlap to change them anyway.",
        markup=False,
    )
    sys.exit(EXIT_INVALID)


def _fail(message: str, code: int, exc: BaseException | None) -> None:
    if state["debug"] and exc is not None:
        raise exc
    err.print(f"phonebatch: {message}", markup=False)
    sys.exit(code)


if __name__ == "__main__":
    main()
