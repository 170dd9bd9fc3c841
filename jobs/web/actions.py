"""The forms that change something: a new batch (a file, or a selection), and pause,
continue, cancel, retry failed and rollback on a batch. Each goes through the operation the
CLI and the JSON API use, and answers a redirect to the batch it concerns."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData, UploadFile

from config import Settings
from jobs.api.deps import ApiError
from jobs.api.upload import parse_form, read_bounded, validate_batch
from jobs.batch.intake import parse_pairs
from jobs.batch.models import PROVIDERS
from jobs.batch.selection import values_problems
from jobs.batch.sources import InputError, detect_format
from jobs.operations.options import Choices, OptionError, batch_options, default_guard
from jobs.operations.producer import BatchOptions, Overlap, submit_batch, submit_selection
from jobs.operations.retries import NothingToRetry, retry_failed
from jobs.operations.rollback import NothingToRollBack, submit_rollback
from jobs.store.interface import BatchState
from jobs.web import session
from jobs.web.auth import Changing, SignedIn, same_site, signed_in, web_key
from jobs.web.pages import store_of
from jobs.web.render import page, root

router = APIRouter(include_in_schema=False)
NEW = "/ui/new"


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.get(NEW)
def new_batch_form(request: Request, _: SignedIn) -> HTMLResponse:
    return page(request, "new.html", _form_context({}, [], None))


def _form_context(
    kept: dict[str, Any], errors: list[dict[str, Any]], problem: str | None
) -> dict[str, Any]:
    return {"kept": kept, "errors": errors, "problem": problem, "providers": PROVIDERS}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


@router.post(NEW)
async def upload_batch(request: Request) -> Response:
    """A batch file, validated whole; any bad row: every one listed, nothing queued, the
    form shown again with what was typed in it."""
    found = signed_in(request)
    settings = settings_of(request)
    form = await parse_form(request, await read_bounded(request, settings.api_max_upload_bytes),
                            settings.api_max_upload_bytes)  # fmt: skip
    if not same_site(request) or not session.csrf_ok(web_key(request), found, _text(form, "csrf")):
        raise HTTPException(403, "the form's CSRF token is missing or wrong; reload the page")
    name, provider, sets = _text(form, "name"), _text(form, "provider"), _text(form, "sets")
    dry_run = _text(form, "dry_run") == "on"
    kept = {"name": name, "provider": provider, "sets": sets, "dry_run": dry_run}
    kept |= _guardrails_kept(form)
    try:
        options = _options(settings, kept)
    except OptionError as exc:
        return _again(request, kept, [], str(exc))
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _again(request, kept, [], "Choose a batch file (CSV, JSON or JSONL).")
    try:
        fmt = detect_format(upload.filename, None)
        data = await upload.read()
        intake = await run_in_threadpool(validate_batch, data, fmt, provider or None, _lines(sets))
    except (InputError, ApiError) as exc:
        return _again(request, kept, [], str(getattr(exc, "detail", exc)))
    if not intake.ok:
        problem = f"{intake.bad_rows} of {intake.rows} rows are invalid; nothing was queued."
        return _again(request, kept, [e.as_dict() for e in intake.errors], problem)
    store = store_of(request)
    submit = partial(
        submit_batch, intake.items, store=store, broker=store.client, queue=settings.queue,
        name=name or upload.filename, source="web",
        webhook_url=settings.webhook_url, options=options,
    )  # fmt: skip
    try:
        batch_id = await run_in_threadpool(submit)
    except Overlap as exc:
        return _again(request, kept, _held_rows(exc), f"Refused: {exc}.")
    return _to_batch(request, batch_id, "created")


def _guardrails_kept(form: FormData | dict[str, Any]) -> dict[str, Any]:
    """The guardrail fields as typed, to submit with and to show again."""

    def text(name: str) -> str:
        value = form.get(name)
        return value if isinstance(value, str) else ""

    return {
        "priority": text("priority") or "normal", "canary": text("canary") or "0",
        "guard": text("guard") == "on", "allow_overlap": text("allow_overlap") == "on",
    }  # fmt: skip


def _options(settings: Settings, kept: dict[str, Any]) -> BatchOptions:
    """The batch's options, as the CLI and the API check them (`OptionError` if wrong)."""
    try:
        canary = int(kept["canary"])
    except ValueError:
        raise OptionError(f"canary {kept['canary']!r}: give a whole number, 0 or more") from None
    choices = Choices(
        dry_run=bool(kept.get("dry_run") or kept.get("select_dry")), priority=kept["priority"],
        canary=canary, guard=kept["guard"], allow_overlap=kept["allow_overlap"],
    )  # fmt: skip
    return batch_options(choices, default_guard(settings))


def _held_rows(exc: Overlap, shown: int = 200) -> list[dict[str, Any]]:
    """The numbers other batches hold, as rows of the form's problem table."""
    return [
        {"row": None, "column": number, "message": f"held by batch {holder}"}
        for number, holder in exc.held[:shown]
    ]


def _again(
    request: Request, kept: dict[str, Any], errors: list[dict[str, Any]], problem: str
) -> HTMLResponse:
    return page(request, "new.html", _form_context(kept, errors, problem), 422)


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


@router.post("/ui/select")
def select_batch(
    request: Request,
    _: Changing,
    where: Annotated[str, Form()] = "",
    sets: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    dry_run: Annotated[str | None, Form()] = None,
    priority: Annotated[str, Form()] = "normal",
    canary: Annotated[str, Form()] = "0",
    guard: Annotated[str | None, Form()] = None,
    allow_overlap: Annotated[str | None, Form()] = None,
) -> Response:
    """Numbers found by their current values (`--where`), each given `--set` values."""
    kept = {"where": where, "select_sets": sets, "select_name": name, "select_dry": bool(dry_run)}
    kept |= _guardrails_kept(
        {"priority": priority, "canary": canary, "guard": guard or "", "allow_overlap":
         allow_overlap or ""}
    )  # fmt: skip
    try:
        options = _options(settings_of(request), kept)
    except OptionError as exc:
        return _again(request, kept, [], str(exc))
    try:
        conditions = parse_pairs(_lines(where), "--where")
        values = parse_pairs(_lines(sets), "--set")
    except InputError as exc:
        return _again(request, kept, [], str(exc))
    if not conditions or not values:
        return _again(request, kept, [], "A selection needs where-conditions and set values.")
    if problems := values_problems(values):
        return _again(
            request, kept, [e.as_dict() for e in problems], "The set values fit no number."
        )
    settings, store = settings_of(request), store_of(request)
    batch_id = submit_selection(
        conditions, values, store=store, broker=store.client, queue=settings.queue,
        name=name or "selection", source="web", webhook_url=settings.webhook_url,
        options=options,
    )  # fmt: skip
    return _to_batch(request, batch_id, "created")


def _to_batch(request: Request, batch_id: str, note: str) -> RedirectResponse:
    return RedirectResponse(f"{root(request)}/ui/batches/{batch_id}?note={note}", 303)


@router.post("/ui/batches/{batch_id}/{action}")
def act(request: Request, batch_id: str, action: str, _: Changing) -> Response:
    """Pause, continue, cancel, retry failed or roll back, as the CLI commands of those names."""
    settings, store = settings_of(request), store_of(request)
    if store.status(batch_id) is None:
        raise HTTPException(404, f"no batch {batch_id!r}")
    if action in ("pause", "cancel", "continue", "continue-no-guard"):
        return _to_batch(request, batch_id, _control(store, settings, batch_id, action))
    try:
        if action == "retry":
            made = retry_failed(store, settings.queue, batch_id)
            return _to_batch(request, made.batch_id, "retry")
        if action == "rollback":
            child, _plan = submit_rollback(
                store, settings.queue, batch_id, force=False, source="web"
            )
            return _to_batch(request, child, "rollback")
    except (NothingToRetry, NothingToRollBack, Overlap) as exc:
        raise HTTPException(409, str(exc)) from None
    raise HTTPException(404, f"no action {action!r}")


def _control(store: Any, settings: Settings, batch_id: str, action: str) -> str:
    if action == "pause":
        final = store.pause(batch_id)
        return "paused" if final is not None and final.state is BatchState.PAUSED else "unchanged"
    if action == "cancel":
        final = store.cancel(batch_id)
        ok = final is not None and final.state is BatchState.CANCELLED
        return "cancelled" if ok else "unchanged"
    no_guard = action == "continue-no-guard"
    answer = store.continue_batch(batch_id, settings.queue, no_guard=no_guard)
    return "continued" if answer and answer[0] else "unchanged"
