"""Commands that serve: the HTTP API, the local Vapi simulator, and the demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from jobs.cli.shared import EXIT_INVALID, CliError, app, err, open_store, out, settings


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
    root_path: Annotated[
        str,
        typer.Option(help="The path prefix a reverse proxy serves us under, e.g. /phonebatch."),
    ] = "",
) -> None:
    """Serve the HTTP API (docs at /docs) and the browser pages (at /)."""
    import uvicorn

    from jobs.web.app import create_app

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
    store = open_store()
    err.print(f"phonebatch on http://{host}:{port}{root_path}/ (API docs at /docs)")
    uvicorn.run(
        create_app(s, store, token=token), host=host, port=port, log_level="warning",
        root_path=root_path.rstrip("/"),
        timeout_graceful_shutdown=5,  # a page left open holds a live stream: stop anyway
    )  # fmt: skip


@app.command()
def demo(
    numbers: Annotated[int, typer.Option(help="How many numbers to move.")] = 200,
) -> None:
    """Run the whole pipeline locally: simulator, worker, a 200-number batch."""
    from jobs.cli.demo import run_demo

    raise typer.Exit(run_demo(settings(), numbers=numbers, out=out, err=err))
