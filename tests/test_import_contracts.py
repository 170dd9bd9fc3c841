"""The import contracts in pyproject.toml hold, and each fails when broken: a copy of the
source with one violation of each planted must make `lint-imports` name every contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "jobs", "worker", "simulator")
# contract id -> (file, the line planted at its top)
PLANTED = {
    "one-direction": ("jobs/store/report.py", "import worker.metrics"),
    "jobs-layers": ("jobs/batch/diff.py", "import jobs.store.interface"),
    "batch-pure": ("jobs/batch/redaction.py", "import httpx"),
    "simulator-apart": ("simulator/stats.py", "import config"),
    "no-cycles": ("worker/pump.py", "import worker.tasks"),
}
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "src"
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the copy, not the installed source
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def _names() -> dict[str, str]:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c["name"] for c in config["contracts"]}


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")
def test_every_contract_holds_and_fails_on_a_planted_violation(tmp_path: Path) -> None:
    names = _names()
    assert set(names) == set(PLANTED)  # a new contract gets a planted violation here too
    tree = _copy(tmp_path)
    clean = _lint(tree)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    for path, line in PLANTED.values():
        target = tree / path
        target.write_text(line + "\n" + target.read_text())
    broken = _lint(tree)

    assert broken.returncode != 0
    for contract, name in names.items():
        assert f"{name} BROKEN" in broken.stdout, (contract, broken.stdout)
