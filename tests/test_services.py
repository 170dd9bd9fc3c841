"""The ports test processes start their servers on: several pytest processes at once
(`make test` runs `pytest -n`) must never end up sharing one server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from jobs.cli import services
from jobs.cli.services import PortTaken, free_port, on_free_port, start_redis_server, stop


def test_free_ports_are_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    low = services._ephemeral_low()
    if low > 3024:  # Linux
        assert all(low - 12288 <= port < low for port in ports)


def test_a_taken_port_is_given_up_for_another(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[int] = []

    def start(port: int) -> str:
        tried.append(port)
        if len(tried) < 3:
            raise PortTaken(f"port {port} taken")
        return "started"

    assert on_free_port(start) == (tried[-1], "started")
    assert len(set(tried)) == 3
    tried.clear()
    with pytest.raises(PortTaken):
        on_free_port(start, attempts=2)


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")
def test_a_redis_server_on_another_ones_port_is_not_taken_for_ours(tmp_path: Path) -> None:
    port = free_port()
    first = start_redis_server(port, tmp_path / "first")
    try:
        with pytest.raises(PortTaken):
            start_redis_server(port, tmp_path / "second")
        assert first.poll() is None
    finally:
        stop(first)
