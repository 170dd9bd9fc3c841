"""The simulator's HTTP server: Vapi's phone-number routes plus `/_sim/` for tests."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.schema import body_problems
from simulator.state import SimulatorState


@dataclass(frozen=True)
class SimulatorConfig:
    api_key: str = "sim-key"
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int = 0


def vapi_error(status: int, message: str | list[str], error: str) -> JSONResponse:
    """Vapi's error body: `{"message": ..., "error": ..., "statusCode": n}`."""
    return JSONResponse({"message": message, "error": error, "statusCode": status}, status)


class Simulator:
    def __init__(self, config: SimulatorConfig, state: SimulatorState) -> None:
        self.config = config
        self.state = state
        self._rng = random.Random(config.seed)

    async def _latency(self) -> None:
        delay = self.config.latency_ms
        if self.config.jitter_ms:
            delay += self._rng.uniform(-self.config.jitter_ms, self.config.jitter_ms)
        if delay > 0:
            await asyncio.sleep(delay / 1000)

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.config.api_key}"

    async def patch_number(self, request: Request) -> Response:
        number_id = request.path_params["id"]
        await self._latency()
        if not self._authorized(request):
            self.state.log("PATCH", number_id, 401)
            return vapi_error(401, "Invalid Key. Check the Authorization header.", "Unauthorized")
        try:
            body = json.loads(await request.body())
        except ValueError:
            self.state.log("PATCH", number_id, 400)
            return vapi_error(400, "body is not valid JSON", "Bad Request")
        problems = body_problems(body)
        current = self.state.numbers.get(number_id)
        if not problems and current is None:
            self.state.log("PATCH", number_id, 404, body)
            return vapi_error(404, f"Phone number {number_id} not found", "Not Found")
        if not problems and current is not None and body["provider"] != current["provider"]:
            problems = [f"provider {body['provider']} does not match the number's provider"]
        if problems:
            self.state.log("PATCH", number_id, 400, body)
            return vapi_error(400, problems, "Bad Request")
        self.state.log("PATCH", number_id, 200, body)
        return JSONResponse(self.state.apply(number_id, body))

    async def get_number(self, request: Request) -> Response:
        number_id = request.path_params["id"]
        await self._latency()
        if not self._authorized(request):
            self.state.log("GET", number_id, 401)
            return vapi_error(401, "Invalid Key. Check the Authorization header.", "Unauthorized")
        number = self.state.numbers.get(number_id)
        self.state.log("GET", number_id, 200 if number else 404)
        if number is None:
            return vapi_error(404, f"Phone number {number_id} not found", "Not Found")
        return JSONResponse(number)

    # --- /_sim/: inspection and setup for tests and the demo; no auth -----------------

    async def sim_requests(self, request: Request) -> Response:
        since = int(request.query_params.get("since", 0))
        return JSONResponse([r.as_dict() for r in self.state.requests[since:]])

    async def sim_numbers(self, request: Request) -> Response:
        if request.method == "POST":
            numbers = await request.json()
            self.state.load(numbers)
            return JSONResponse({"loaded": len(numbers)})
        return JSONResponse(list(self.state.numbers.values()))

    async def sim_reset(self, request: Request) -> Response:
        """Forget the request log; with a JSON list body, load those numbers too."""
        self.state.requests.clear()
        raw = await request.body()
        if raw:
            self.state.load(json.loads(raw))
        return JSONResponse({"numbers": len(self.state.numbers)})

    async def sim_health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "numbers": len(self.state.numbers)})


def create_app(config: SimulatorConfig, state: SimulatorState) -> Starlette:
    sim = Simulator(config, state)
    return Starlette(
        routes=[
            Route("/phone-number/{id}", sim.patch_number, methods=["PATCH"]),
            Route("/phone-number/{id}", sim.get_number, methods=["GET"]),
            Route("/_sim/requests", sim.sim_requests, methods=["GET"]),
            Route("/_sim/numbers", sim.sim_numbers, methods=["GET", "POST"]),
            Route("/_sim/reset", sim.sim_reset, methods=["POST"]),
            Route("/_sim/health", sim.sim_health, methods=["GET"]),
        ]
    )


def serve(config: SimulatorConfig, state: SimulatorState, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(
        create_app(config, state), host=host, port=port, log_level="warning", access_log=False
    )


__all__ = ["SimulatorConfig", "create_app", "serve", "vapi_error"]
