"""The `phonebatch` command as a person meets it: one clear line on errors, right exit codes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import redis

from jobs.cli.services import free_port
from jobs.store.interface import ItemRecord, ItemStatus, Outcome
from jobs.store.report import write_csv
from simulator.state import generate_numbers
from tests.conftest import QUEUE
from tests.helpers import Simulator, WorkerProcess, run_cli


def _nowhere() -> dict[str, str]:
    return {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}


def _good_csv(path: Path) -> Path:
    path.write_text(
        "id,provider,assistantId,server.timeoutSeconds\nn1,vapi,asst_1,20\nn2,twilio,asst_1,\n"
    )
    return path


def test_validate_needs_no_redis_and_no_key(tmp_path: Path) -> None:
    result = run_cli("validate", str(_good_csv(tmp_path / "ok.csv")), env=_nowhere())
    assert result.returncode == 0, result.stderr
    assert "2 rows, all valid (twilio 1, vapi 1)" in result.stdout


def test_validate_lists_every_bad_row_as_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "provider": "vapi", "smsEnabled": true}\n{"id": "b"}\n[1]\n')
    result = run_cli("validate", str(path), "--json", env=_nowhere())
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False and report["rows"] == 3 and report["invalid_rows"] == 3
    assert [(e["row"], e["column"]) for e in report["errors"]] == [
        (1, "smsEnabled"), (2, "provider"), (3, None),
    ]  # fmt: skip


def test_missing_redis_is_one_line_saying_where_and_how(tmp_path: Path) -> None:
    env = _nowhere()
    result = run_cli("submit", str(_good_csv(tmp_path / "ok.csv")), env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert env["REDIS_URL"] in lines[0] and "docker compose up -d redis" in lines[0]
    assert "Traceback" not in result.stderr


def test_input_problems_are_one_line_with_exit_2(tmp_path: Path) -> None:
    missing = run_cli("validate", str(tmp_path / "nope.csv"), env=_nowhere())
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        f"phonebatch: {tmp_path}/nope.csv: no such file",
    )
    (tmp_path / "x.txt").write_text("id\n")
    unknown = run_cli("validate", str(tmp_path / "x.txt"), env=_nowhere())
    assert unknown.returncode == 2 and "--format" in unknown.stderr
    broken = tmp_path / "b.json"
    broken.write_text('[{"id": "a"},\n {"id": ')
    result = run_cli("validate", str(broken), env=_nowhere())
    assert result.returncode == 2 and "line 2" in result.stderr and "Traceback" not in result.stderr
    bad_set = run_cli(
        "validate", str(_good_csv(tmp_path / "ok.csv")), "--set", "oops", env=_nowhere()
    )
    assert bad_set.returncode == 2 and "FIELD=VALUE" in bad_set.stderr


def test_unknown_batch_and_unknown_format(redis_url: str, redis_client: redis.Redis) -> None:
    env = {"REDIS_URL": redis_url}
    result = run_cli("status", "20990101-000000-abcdef", env=env)
    assert result.returncode == 2 and "no batch '20990101-000000-abcdef'" in result.stderr
    bad = run_cli("report", "x", "--format", "xml", env=env)
    assert bad.returncode == 2 and "use table, json or csv" in bad.stderr


def test_worker_refuses_to_start_without_a_key() -> None:
    result = run_cli("worker", env=_nowhere())
    assert result.returncode == 2 and "VAPI_API_KEY is not set" in result.stderr


def test_csv_report_neutralizes_formulas() -> None:
    records = [
        ItemRecord(0, 2, '=HYPERLINK("x")').with_outcome(
            Outcome(ItemStatus.FAILED, 400, 1, error="+1 is bad", sent={"name": "@x"}), 1.0
        ),
        ItemRecord(1, 3, "-5"),
    ]
    out = io.StringIO()
    write_csv(records, out)
    rows = list(csv.reader(out.getvalue().splitlines()))
    assert rows[0] == ["row", "id", "status", "http_status", "attempts", "error", "sent", "reason"]
    assert rows[1] == [
        "2",
        '\'=HYPERLINK("x")',
        "failed",
        "400",
        "1",
        "'+1 is bad",
        '{"name": "@x"}',
        "",
    ]
    assert rows[2] == ["3", "'-5", "pending", "", "0", "", "", ""]


def test_status_report_and_list_of_a_finished_batch(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    simulator: Simulator,
    worker: WorkerProcess,
) -> None:
    numbers = generate_numbers(4, seed=21)
    simulator.reset(numbers)
    path = tmp_path / "b.csv"
    path.write_text(
        "id,provider,name\n" + "".join(f"{n['id']},{n['provider']},=x\n" for n in numbers)
    )
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": QUEUE}
    submitted = run_cli("submit", str(path), "--wait", "--name", "night switch", env=env)
    assert submitted.returncode == 0, submitted.stderr
    batch_id = next(w for w in submitted.stdout.split() if w.count("-") == 2 and len(w) == 22)

    status = run_cli("status", batch_id, env=env)
    assert "state     completed" in status.stdout and "4 succeeded, 0 failed" in status.stdout
    as_json = json.loads(run_cli("status", batch_id, "--json", env=env).stdout)
    assert as_json["name"] == "night switch" and as_json["source"] == "cli"
    table = run_cli("report", batch_id, env=env).stdout.splitlines()
    assert len(table) == 6 and all("succeeded" in line for line in table[2:])
    csv_out = tmp_path / "r.csv"
    written = run_cli("report", batch_id, "--format", "csv", "-o", str(csv_out), env=env)
    assert written.returncode == 0 and len(csv_out.read_text().splitlines()) == 5
    assert '"{""name"": ""=x""' in csv_out.read_text()  # JSON cells start with {: inert
    listed = run_cli("list", env=env).stdout
    assert batch_id in listed and "night switch" in listed
