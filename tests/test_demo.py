"""`phonebatch demo` works from nothing: it starts its own Redis when none answers."""

from __future__ import annotations

import shutil

import pytest

from jobs.cli.services import free_port
from tests.helpers import run_cli

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_demo_runs_and_cleans_up_without_a_redis() -> None:
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    result = run_cli("demo", "--numbers", "40", env=env, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "starting a private one" in result.stderr
    assert "40 numbers: 40 succeeded, 0 failed" in result.stdout
    assert "40 of 40 numbers on asst_demo_after_hours" in result.stdout
    # No terminal: the pages' URL first, no token to sign in with, and it ends by itself.
    assert result.stderr.splitlines()[0].startswith("Follow it in your browser: http://")
    assert "token" not in result.stderr + result.stdout


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_in_a_terminal_the_demo_prints_the_pages_url_first_and_keeps_them_up() -> None:
    """Its first line is the pages' URL, then a token that signs in there; the pages
    answer before the batch starts and still after it ended, until Enter."""
    import io
    import re

    import httpx
    from rich.console import Console

    from config import Settings
    from jobs.cli.demo import run_demo

    err_text, out_text = io.StringIO(), io.StringIO()
    err, out = Console(file=err_text, width=200), Console(file=out_text, width=200)
    seen: list[int] = []

    def enter() -> None:  # what the person at the terminal does at each pause
        lines = err_text.getvalue().splitlines()
        url = lines[0].split(": ", 1)[1]
        token = re.search(r"Sign in with this token: (\S+)", lines[1])
        assert url.startswith("http://127.0.0.1:") and token is not None
        with httpx.Client(base_url=url) as browser:
            signed = browser.post("/ui/signin", data={"token": token[1], "after": "/"})
            assert signed.status_code == 303
            seen.append(browser.get("/").status_code)

    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    code = run_demo(settings, numbers=20, out=out, err=err, interactive=True, wait=enter)
    assert code == 0, err_text.getvalue() + out_text.getvalue()
    assert seen == [200, 200]
    assert "20 numbers: 20 succeeded" in out_text.getvalue()
