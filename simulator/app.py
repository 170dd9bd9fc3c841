"""The simulator's HTTP server: Vapi's phone-number routes plus `/_sim/` for tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from simulator.faults import Decision, Fault, FaultConfig, FaultInjector
from simulator.listing import list_matching
from simulator.schema import body_problems, variant_validators
from simulator.state import SimulatorState
from simulator.stats import InFlight


@dataclass(frozen=True)
class SimulatorConfig:
    """How a simulator starts: the API key it accepts and the faults it injects."""

    api_key: str = "sim-key"
    faults: FaultConfig = field(default_factory=FaultConfig)


def vapi_error(
    status: int, message: str | list[str], error: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Vapi's error body: `{"message": ..., "error": ..., "statusCode": n}`."""
    body = {"message": message, "error": error, "statusCode": status}
    return JSONResponse(body, status, headers=headers)


class DroppedConnection(Response):
    """Promises a body, sends a piece of it, and lets the server close the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"64")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        # The server refuses the short body and closes the connection: that is the point.
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b'{"id":', "more_body": False})


_ERROR_NAMES = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
_ERROR_NAMES[504] = "Gateway Timeout"


def _fault_response(decision: Decision) -> Response | None:
    fault = decision.fault
    if fault is Fault.AUTH:
        return vapi_error(401, "Invalid Key. Check the Authorization header.", "Unauthorized")
    if fault in (Fault.THROTTLED, Fault.RANDOM_429):
        headers = {"Retry-After": str(decision.retry_after)}
        return vapi_error(429, "Too Many Requests", "Too Many Requests", headers)
    if fault is Fault.SERVER_ERROR:
        return vapi_error(decision.status, "Something went wrong", _ERROR_NAMES[decision.status])
    return None


def _logged(fault: Fault | None) -> Fault | None:
    return None if fault is Fault.HANG else fault  # a hang was logged when it began


class Simulator:
    """The route handlers: check the key, inject faults, and answer from the state."""

    def __init__(self, config: SimulatorConfig, state: SimulatorState) -> None:
        self.api_key = config.api_key
        self.state = state
        self.faults = FaultInjector(config.faults)
        self.in_flight = InFlight()

    def _log(
        self,
        request: Request,
        method: str,
        number_id: str,
        status: int,
        body: Any = None,
        fault: Fault | None = None,
    ) -> None:
        """Log the request at its arrival time: what a rate limit on the server sees."""
        self.state.log(method, number_id, status, body, fault, at=request.state.arrived)

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    async def _admit(self, request: Request, method: str, number_id: str) -> Response | Decision:
        """Auth and injected faults, decided on arrival; the answer comes after latency."""
        request.state.arrived = time.time()
        decision = self.faults.decide(number_id, time.monotonic())
        if decision.fault is Fault.HANG:
            # Logged on arrival: the client gives up first, and the server may never answer.
            self._log(request, method, number_id, 0, fault=decision.fault)
        if decision.delay:
            await asyncio.sleep(decision.delay)
        if not self._authorized(request):
            self._log(request, method, number_id, 401)
            return vapi_error(401, "Invalid Key. Check the Authorization header.", "Unauthorized")
        answer = _fault_response(decision)
        if answer is not None:
            self._log(request, method, number_id, answer.status_code, fault=decision.fault)
            return answer
        return decision

    async def patch_number(self, request: Request) -> Response:
        number_id = request.path_params["id"]
        admitted = await self._admit(request, "PATCH", number_id)
        if isinstance(admitted, Response):
            return admitted
        try:
            body = json.loads(await request.body())
        except ValueError:
            self._log(request, "PATCH", number_id, 400)
            return vapi_error(400, "body is not valid JSON", "Bad Request")
        problems = body_problems(body)
        current = self.state.numbers.get(number_id)
        if admitted.fault is Fault.MISSING or (not problems and current is None):
            self._log(request, "PATCH", number_id, 404, body)
            return vapi_error(404, f"Phone number {number_id} not found", "Not Found")
        if not problems and current is not None and body["provider"] != current["provider"]:
            problems = [f"provider {body['provider']} does not match the number's provider"]
        if problems:
            self._log(request, "PATCH", number_id, 400, body)
            return vapi_error(400, problems, "Bad Request")
        updated = self.state.apply(number_id, body)
        self._log(request, "PATCH", number_id, 200, body, fault=_logged(admitted.fault))
        if admitted.fault is Fault.DROP:
            return DroppedConnection()
        return JSONResponse(updated)

    async def get_number(self, request: Request) -> Response:
        number_id = request.path_params["id"]
        admitted = await self._admit(request, "GET", number_id)
        if isinstance(admitted, Response):
            return admitted
        number = self.state.numbers.get(number_id)
        if admitted.fault is Fault.MISSING or number is None:
            self._log(request, "GET", number_id, 404)
            return vapi_error(404, f"Phone number {number_id} not found", "Not Found")
        self._log(request, "GET", number_id, 200, fault=_logged(admitted.fault))
        if admitted.fault is Fault.DROP:
            return DroppedConnection()
        return JSONResponse(number)

    async def list_numbers(self, request: Request) -> Response:
        """GET /phone-number: newest first, `limit` 0..1000 (default 100), createdAt and
        updatedAt filters (Gt, Lt, Ge, Le); no cursor: callers page by createdAt."""
        admitted = await self._admit(request, "LIST", "")
        if isinstance(admitted, Response):
            return admitted
        try:
            matches = list_matching(self.state.numbers.values(), request.query_params)
        except ValueError as exc:
            self._log(request, "LIST", "", 400)
            return vapi_error(400, [str(exc)], "Bad Request")
        self._log(request, "LIST", "", 200)
        return JSONResponse(matches)

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
        """Forget the request log and the faults; with a JSON list body, load those numbers."""
        self.state.requests.clear()
        self.in_flight.reset()
        self.faults = FaultInjector(FaultConfig())
        raw = await request.body()
        if raw:
            self.state.load(json.loads(raw))
        return JSONResponse({"numbers": len(self.state.numbers)})

    async def sim_faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.faults = FaultInjector(FaultConfig.from_dict(await request.json()))
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(self.faults.config.as_dict())

    async def sim_concurrency(self, request: Request) -> Response:
        """Phone-number requests in flight now, and the most at once since the reset."""
        return JSONResponse({"in_flight": self.in_flight.now, "peak": self.in_flight.peak})

    async def sim_health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "numbers": len(self.state.numbers), "pid": os.getpid()})


def create_app(config: SimulatorConfig, state: SimulatorState) -> Starlette:
    variant_validators()  # compiled now, not on the first request
    sim = Simulator(config, state)
    return Starlette(
        routes=[
            Route("/phone-number", sim.list_numbers, methods=["GET"]),
            Route("/phone-number/{id}", sim.patch_number, methods=["PATCH"]),
            Route("/phone-number/{id}", sim.get_number, methods=["GET"]),
            Route("/_sim/requests", sim.sim_requests, methods=["GET"]),
            Route("/_sim/numbers", sim.sim_numbers, methods=["GET", "POST"]),
            Route("/_sim/reset", sim.sim_reset, methods=["POST"]),
            Route("/_sim/faults", sim.sim_faults, methods=["GET", "POST"]),
            Route("/_sim/concurrency", sim.sim_concurrency, methods=["GET"]),
            Route("/_sim/health", sim.sim_health, methods=["GET"]),
        ],
        middleware=[Middleware(_CountInFlight, counter=sim.in_flight)],
    )


class _CountInFlight:
    """Counts API requests from their arrival until their answer is sent."""

    def __init__(self, app: ASGIApp, counter: InFlight) -> None:
        self._app = app
        self._counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/phone-number"):
            await self._app(scope, receive, send)
            return
        self._counter.enter()
        try:
            await self._app(scope, receive, send)
        finally:
            self._counter.leave()


def serve(config: SimulatorConfig, state: SimulatorState, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(
        create_app(config, state), host=host, port=port, log_level="warning", access_log=False
    )
