"""The pages in a real browser: headless Chromium (the system's, driven by Playwright)
against a real `phonebatch api`, a real worker, Redis and the simulator.

One stack and one signed-in browser serve the whole module. Each page is checked with
axe-core (WCAG 2 A and AA rules). With PHONEBATCH_SCREENSHOTS=1 (`make screenshots`) the
run also writes the README's screenshots to docs/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobs.cli.services import free_port, start, start_worker, stop, wait_until
from jobs.store.redis_store import RedisReportStore
from jobs.store.timeline import read as read_timeline
from simulator.state import generate_numbers
from tests.conftest import IN_CI, worker_env
from tests.helpers import Simulator, WorkerProcess, run_cli

pytestmark = pytest.mark.e2e

TOKEN = "browser-token-5d1e"
SCREENSHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
NEW_ASSISTANT = "asst_browser_after"
# Read at import: the autouse fixture clears every PHONEBATCH_ variable before each test.
TAKE_SCREENSHOTS = os.environ.get("PHONEBATCH_SCREENSHOTS") == "1"
CHROMIUM = os.environ.get("PHONEBATCH_CHROMIUM") or shutil.which("chromium")


def _chromium() -> str:
    found = CHROMIUM
    if found is None:
        message = "no chromium (apt-get install chromium, or set PHONEBATCH_CHROMIUM)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass
class Stack:
    url: str
    redis_url: str
    queue: str
    store: RedisReportStore
    simulator: Simulator
    worker: WorkerProcess
    api_log: Path

    def wait_done(self, batch_id: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.store.status(batch_id)
            if status is not None and status.done:
                return
            time.sleep(0.1)
        raise AssertionError(f"{batch_id} not done: {self.worker.log_tail()}")


@pytest.fixture(scope="module")
def stack(
    redis_url: str, simulator_server: Simulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("browser")
    own_db = redis_url.rsplit("/", 1)[0] + "/7"  # apart from tests that flush db 0
    store = RedisReportStore.from_url(own_db, retention_seconds=3600)
    store.client.flushdb()
    queue = f"phonebatch-browser-{uuid.uuid4().hex[:6]}"
    # A pace far above what the tests send: the shared limiter has a state to show.
    env = worker_env(own_db, simulator_server, PHONEBATCH_QUEUE=queue, PHONEBATCH_RATE_LIMIT="500")
    worker = start_worker(env=env, concurrency=8, log=logs / "worker.log")
    port = free_port()
    api_env = {"REDIS_URL": own_db, "PHONEBATCH_QUEUE": queue, "PHONEBATCH_API_TOKEN": TOKEN}
    api = start(
        [sys.executable, "-m", "jobs.cli", "api", "--port", str(port)], env=api_env,
        log=logs / "api.log",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(url) or api.poll() is not None, timeout=20, what="the API")
        assert api.poll() is None, (logs / "api.log").read_text()
        yield Stack(
            url, own_db, queue, store, simulator_server, WorkerProcess(worker, logs / "worker.log"),
            logs / "api.log",
        )  # fmt: skip
    finally:
        stop(api)
        stop(worker)
        simulator_server.set_faults(latency_ms=0)
        store.client.flushdb()
        store.client.close()


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    """A signed-in page (sign-in itself: `test_pages_need_a_session_and_forms_need_their_token`)."""
    context = browser.new_context(base_url=stack.url, viewport={"width": 1100, "height": 900})
    context.set_default_timeout(15_000)
    signed = context.new_page()
    signed.on("dialog", lambda dialog: dialog.accept())
    signed.on("console", lambda message: CONSOLE_ERRORS.append(message.text)
              if "Content Security Policy" in message.text else None)  # fmt: skip
    _sign_in(signed, TOKEN)
    signed.wait_for_url(f"{stack.url}/")
    try:
        yield signed
    finally:
        context.close()


def _sign_in(page: Any, token: str) -> None:
    page.goto("/")
    page.fill("#token", token)
    page.click("button[type=submit]")


CONSOLE_ERRORS: list[str] = []  # the signed-in page's CSP violations, if any


def _accessible(page: Any) -> None:
    """No WCAG 2 A/AA violation that axe-core finds on the page as it stands, and no
    script or style the CSP refused so far."""
    assert CONSOLE_ERRORS == []
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]})
    assert results.violations_count == 0, results.generate_report()


def _screenshot(page: Any, name: str, *, full: bool = False) -> None:
    if TAKE_SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full)


def _numbers(stack: Stack, count: int, seed: int) -> list[dict[str, Any]]:
    numbers = generate_numbers(count, seed)
    stack.simulator.reset(numbers)
    return numbers


def _csv(numbers: list[dict[str, Any]], tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    rows = "".join(f"{n['id']},{n['provider']},{NEW_ASSISTANT}\n" for n in numbers)
    path.write_text("id,provider,assistantId\n" + rows)
    return path


def _batch_id(page: Any) -> str:
    return str(page.url.split("/ui/batches/")[1].split("?")[0])


def test_pages_need_a_session_and_forms_need_their_token(browser: Any, stack: Stack) -> None:
    # No session: every page route answers a redirect to the sign-in form, nothing else.
    for path in ("/", "/ui/new", "/ui/batches/x", "/ui/batches/x/events",
                 "/ui/batches/x/report.csv"):  # fmt: skip
        answer = httpx.get(stack.url + path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/signin")
    assert httpx.post(f"{stack.url}/ui/batches/x/cancel").status_code == 303

    context = browser.new_context(base_url=stack.url)
    try:
        page = context.new_page()
        _sign_in(page, "not-the-token")
        assert page.locator("[role=alert]").inner_text().startswith("That is not the API token")
        assert context.cookies() == []
        _accessible(page)
        _screenshot(page, "sign-in")

        _sign_in(page, TOKEN)
        page.wait_for_url(f"{stack.url}/")
        (cookie,) = context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert TOKEN not in cookie["value"] and TOKEN not in page.content()
        assert page.evaluate("document.cookie") == ""  # out of the scripts' reach
        jar = {cookie["name"]: cookie["value"]}

        # The JSON API never takes the cookie; the pages never take a form without the
        # session's CSRF token, nor one posted from another site.
        assert httpx.get(f"{stack.url}/batches", cookies=jar).status_code == 401
        no_csrf = httpx.post(f"{stack.url}/ui/select", cookies=jar, data={"where": "a=b"})
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
        csrf = page.locator("input[name=csrf]").first.get_attribute("value")
        foreign = httpx.post(
            f"{stack.url}/ui/select", cookies=jar, data={"csrf": csrf},
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        )  # fmt: skip
        assert foreign.status_code == 403
        policy = httpx.get(f"{stack.url}/ui/signin").headers["content-security-policy"]
        assert "script-src 'self';" in policy and "unsafe" not in policy
    finally:
        context.close()


def test_a_file_with_bad_rows_names_each_and_queues_nothing(
    page: Any, stack: Stack, tmp_path: Path
) -> None:
    numbers = _numbers(stack, 3, seed=11)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "id,provider,assistantID\n"
        f"{numbers[0]['id']},twilio,asst_1\n"
        f"{numbers[1]['id']},nope,asst_1\n"
        f"{numbers[0]['id']},twilio,asst_1\n"
    )
    before = len(stack.store.list_batches(0, 100))
    page.goto("/ui/new")
    page.set_input_files("#file", str(bad))
    page.fill("#name", "kept name")
    page.click("form[action$='/ui/new'] button[type=submit]")
    assert "rows are invalid; nothing was queued" in page.locator("#problem").inner_text()
    table = page.locator("table.errors").inner_text()
    assert "assistantId" in table  # the "did you mean" of the misspelled column
    assert "nope" in table and "4" in table  # the bad provider, the duplicate's row
    assert page.input_value("#name") == "kept name"
    assert len(stack.store.list_batches(0, 100)) == before
    _accessible(page)
    _screenshot(page, "new-batch-errors", full=True)


def test_a_dry_run_shows_the_diff(page: Any, stack: Stack, tmp_path: Path) -> None:
    numbers = _numbers(stack, 6, seed=12)
    numbers[0]["assistantId"] = NEW_ASSISTANT
    stack.simulator.reset(numbers)
    page.goto("/ui/new")
    page.set_input_files("#file", str(_csv(numbers, tmp_path, "dry.csv")))
    page.check("#dry_run")
    page.click("form[action$='/ui/new'] button[type=submit]")
    page.wait_for_url("**/ui/batches/**")
    stack.wait_done(_batch_id(page))
    page.locator("[data-field=state]", has_text="completed").wait_for()
    items = page.locator("#items")
    items.locator("text=already in target state").first.wait_for()
    assert items.locator(".change", has_text=f"→ {NEW_ASSISTANT}").count() == 5
    assert all(n["assistantId"] != NEW_ASSISTANT for n in stack.simulator.numbers().values()
               if n["id"] != numbers[0]["id"])  # fmt: skip
    _accessible(page)
    _screenshot(page, "batch-dry-run", full=True)
    # On a phone: nothing wider than the screen but the tables, which scroll by themselves.
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        _screenshot(page, "batch-phone")
    finally:
        page.set_viewport_size({"width": 1100, "height": 900})


def test_a_run_goes_live_to_100_percent_and_its_csv_matches_the_cli(
    page: Any, stack: Stack, tmp_path: Path
) -> None:
    numbers = _numbers(stack, 60, seed=13)
    stack.simulator.set_faults(latency_ms=60)
    try:
        page.goto("/ui/new")
        page.set_input_files("#file", str(_csv(numbers, tmp_path, "run.csv")))
        page.click("form[action$='/ui/new'] button[type=submit]")
        page.wait_for_url("**/ui/batches/**")
        page.evaluate("window.notReloaded = true")
        page.locator("[data-field=percent]", has_text="100").wait_for(timeout=30_000)
        page.locator("[data-field=state]", has_text="completed").wait_for()
        assert page.evaluate("window.notReloaded") is True  # live, not reloaded
        assert page.locator("[data-count=succeeded]").inner_text() == "60"
        page.locator("#items .status-succeeded").first.wait_for()  # final items swapped in
        assert "requests/s now" in page.locator("[data-field=pace]").inner_text()
    finally:
        stack.simulator.set_faults(latency_ms=0)
    _accessible(page)
    _screenshot(page, "batch-completed")

    batch_id = _batch_id(page)
    with page.expect_download() as download:
        page.click("#download-csv")
    from_page = Path(download.value.path()).read_text()
    cli = run_cli("report", batch_id, "--format", "csv", env={"REDIS_URL": stack.redis_url})
    assert cli.returncode == 0, cli.stderr
    assert from_page == cli.stdout
    assert len(from_page.splitlines()) == 61
    as_json = page.request.get(f"/ui/batches/{batch_id}/report.json").json()
    assert as_json["counts"]["succeeded"] == 60 and len(as_json["items"]) == 60
    # The chart's data: the workers counted every request into the batch's time buckets.
    wait_until(  # workers write their counts once a second
        lambda: sum(b.requests for b in read_timeline(stack.store.client, batch_id)) >= 60,
        timeout=5, what="the timeline's requests",
    )  # fmt: skip

    page.click("nav.pager >> text=Next")  # 60 items: the second page holds the last 10
    assert page.locator("#items tbody tr").count() == 10
    page.goto("/")
    assert batch_id in page.locator("table.batches").inner_text()
    _accessible(page)
    _screenshot(page, "batches")


def test_a_slower_batch_is_paused_continued_and_cancelled_from_its_page(
    page: Any, stack: Stack, tmp_path: Path
) -> None:
    numbers = _numbers(stack, 200, seed=14)
    stack.simulator.set_faults(latency_ms=250)
    try:
        page.goto("/ui/new")
        page.set_input_files("#file", str(_csv(numbers, tmp_path, "slow.csv")))
        page.fill("#name", "slow batch")
        page.click("form[action$='/ui/new'] button[type=submit]")
        page.wait_for_url("**/ui/batches/**")
        # A couple of seconds in: the chart has the workers' first buckets.
        succeeded = page.locator("[data-count=succeeded]")
        wait_until(lambda: int(succeeded.inner_text()) >= 50, timeout=20, what="50 sent")
        _screenshot(page, "batch-running")
        page.click("#action-pause")  # the confirmation is accepted (see `page`)
        page.locator("[data-field=state]", has_text="paused").wait_for()
        page.click("#action-continue")
        page.locator("#action-pause").wait_for()  # running again: it can be paused
        page.focus("#action-cancel")  # by keyboard this time
        page.keyboard.press("Enter")
        page.locator("[data-field=state]", has_text="cancelled").wait_for()
        batch_id = _batch_id(page)
        stack.wait_done(batch_id)
        status = stack.store.status(batch_id)
        assert status is not None and status.counts.cancelled > 0
    finally:
        stack.simulator.set_faults(latency_ms=0)
    _accessible(page)


def test_the_api_docs_work_offline(page: Any, stack: Stack) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto("/docs")
    page.locator(".swagger-ui .opblock").first.wait_for()
    assert all(u.startswith(stack.url) or u.startswith("data:") for u in requests), requests


def test_a_rollback_from_the_page_shows_the_numbers_changed_since(
    page: Any, stack: Stack, tmp_path: Path
) -> None:
    numbers = _numbers(stack, 4, seed=15)
    page.goto("/ui/new")
    page.set_input_files("#file", str(_csv(numbers, tmp_path, "to-undo.csv")))
    page.click("form[action$='/ui/new'] button[type=submit]")
    page.wait_for_url("**/ui/batches/**")
    stack.wait_done(_batch_id(page))
    page.locator("#action-rollback").wait_for()  # shown once the batch has ended
    current = stack.simulator.numbers()
    current[numbers[0]["id"]]["assistantId"] = "asst_someone_else"  # someone moved one since
    stack.simulator.reset(list(current.values()))
    page.click("#action-rollback")
    page.wait_for_url("**note=rollback")
    stack.wait_done(_batch_id(page))
    page.goto(page.url.split("?")[0] + "?status=skipped")
    assert "changed since: assistantId" in page.locator("#items .conflict").inner_text()
    now = stack.simulator.numbers()
    assert now[numbers[0]["id"]]["assistantId"] == "asst_someone_else"
    assert all(now[n["id"]]["assistantId"] == n["assistantId"] for n in numbers[1:])


def test_a_selection_as_a_dry_run(page: Any, stack: Stack) -> None:
    numbers = _numbers(stack, 3, seed=16)
    page.goto("/ui/new")
    page.fill("#where", f"assistantId={numbers[0]['assistantId']}")
    page.fill("#select_sets", "name=Selected by the page")
    page.check("#select_dry")
    page.click("form[action$='/ui/select'] button[type=submit]")
    page.wait_for_url("**/ui/batches/**")
    stack.wait_done(_batch_id(page))
    page.reload()
    assert page.locator("#items .change", has_text="→ Selected by the page").count() == 3
    assert all(n["name"] != "Selected by the page" for n in stack.simulator.numbers().values())


def test_no_secret_of_a_batch_appears_in_a_page(page: Any, stack: Stack, tmp_path: Path) -> None:
    twilio = [n for n in _numbers(stack, 10, seed=17) if n["provider"] == "twilio"]
    secret = "twilio-secret-9f8e7d"
    path = tmp_path / "secret.csv"
    rows = "".join(f"{n['id']},twilio,{secret}\n" for n in twilio)
    path.write_text("id,provider,twilioAuthToken\n" + rows)
    page.goto("/ui/new")
    page.set_input_files("#file", str(path))
    page.check("#dry_run")
    page.click("form[action$='/ui/new'] button[type=submit]")
    page.wait_for_url("**/ui/batches/**")
    batch_id = _batch_id(page)
    stack.wait_done(batch_id)
    page.reload()
    assert "twilioAuthToken" in page.locator("#items").inner_text()
    assert "***" in page.locator("#items").inner_text()
    for shown in (page.content(), page.request.get(f"/ui/batches/{batch_id}/report.json").text(),
                  page.request.get(f"/ui/batches/{batch_id}/report.csv").text()):  # fmt: skip
        assert secret not in shown


def test_failed_items_show_the_apis_message_and_are_retried(
    page: Any, stack: Stack, tmp_path: Path
) -> None:
    numbers = _numbers(stack, 3, seed=18)
    stack.simulator.set_faults(always_404=[numbers[1]["id"]])
    try:
        page.goto("/ui/new")
        page.set_input_files("#file", str(_csv(numbers, tmp_path, "one-missing.csv")))
        page.click("form[action$='/ui/new'] button[type=submit]")
        page.wait_for_url("**/ui/batches/**")
        stack.wait_done(_batch_id(page))
        page.locator("#show-failed").click()
        failed = page.locator("#items tbody tr")
        assert failed.count() == 1 and numbers[1]["id"] in failed.inner_text()
        assert "not found" in failed.inner_text()  # the API's own message
        first = _batch_id(page)
        page.click("#action-retry")
        page.wait_for_url("**note=retry")
        assert _batch_id(page) != first and f"retry of {first}" in page.inner_text("main")
        assert "of 1 ended" in page.locator("#live").inner_text()
    finally:
        stack.simulator.set_faults(latency_ms=0)


def test_a_canary_from_the_page_pauses_holds_its_numbers_and_continues(
    page: Any, stack: Stack, tmp_path: Path
) -> None:
    numbers = _numbers(stack, 30, seed=16)
    path = _csv(numbers, tmp_path, "canary.csv")
    page.goto("/ui/new")
    page.set_input_files("#file", str(path))
    page.select_option("#priority", "high")
    page.fill("#canary", "5")
    page.click("form[action$='/ui/new'] button[type=submit]")
    page.wait_for_url("**/ui/batches/**")
    batch_id = _batch_id(page)
    # It pauses itself after 5: the page says why and offers Continue, with no reload.
    page.locator("#paused-reason", has_text="Paused by its canary").wait_for(timeout=20_000)
    page.locator("#action-continue").wait_for()
    assert "priority high" in page.locator("#live").inner_text()
    _accessible(page)

    # Its 25 unsent numbers are held: the same file again is refused, each one named.
    page.goto("/ui/new")
    page.set_input_files("#file", str(path))
    page.click("form[action$='/ui/new'] button[type=submit]")
    page.locator("#problem", has_text="being changed by another batch").wait_for()
    assert page.locator("table.errors tbody tr").count() == 25
    assert batch_id in page.locator("table.errors").inner_text()
    assert page.locator("#canary").input_value() == "0"  # the form as it was typed

    page.goto(f"/ui/batches/{batch_id}")
    page.click("#action-continue")
    page.locator("[data-field=state]", has_text="completed").wait_for(timeout=30_000)
    status = stack.store.status(batch_id)
    assert status is not None and status.counts.succeeded == 30
