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
