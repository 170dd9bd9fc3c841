"""Small pieces, held by a test rather than by memory: in the product's packages no
function is over 50 lines, no module over 500, and every public class says what it is."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "jobs", "worker", "simulator", "bench")
MAX_FUNCTION, MAX_MODULE = 50, 500


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_functions_and_modules_stay_small_and_public_classes_say_what_they_are() -> None:
    found = []
    for path in _modules():
        source = path.read_text()
        where = path.relative_to(ROOT)
        if (lines := source.count("\n")) > MAX_MODULE:
            found.append(f"{where}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION:
                    found.append(f"{where}:{node.lineno} {node.name}() is {length} lines")
            elif (
                isinstance(node, ast.ClassDef)
                and not node.name.startswith("_")
                and ast.get_docstring(node) is None
            ):
                found.append(f"{where}:{node.lineno} class {node.name} has no docstring")
    assert len(_modules()) > 50  # the packages were found
    assert found == []
