"""The docs cite tests by module and name (``test_x.py::test_y``): each cited test exists, in
the module cited, so a test moved or renamed takes its citations with it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `test_x.py::test_y`, `tests/integration/test_x.py::test_y[param]`; a name cut short and
# ended by `_...` (`test_a_group_the_log_refuses_...`) cites the tests it begins
CITATION = re.compile(r"(test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)(\.\.\.)?")


def _tests_by_module() -> dict[str, set[str]]:
    """Every test function of ``tests/`` (top level or in a class), by its module's file name
    (two modules of one name, in ``integration/`` and ``property/``, pool their tests)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = found.setdefault(path.name, set())
        for node in ast.walk(tree):
            test = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if test and node.name.startswith("test_"):
                names.add(node.name)
    return found


def _missing(text: str, tests: dict[str, set[str]]) -> list[str]:
    missing = []
    for match in CITATION.finditer(text):
        module, name, cut = match.groups()
        names = tests.get(module, set())
        if not (any(n.startswith(name) for n in names) if cut else name in names):
            missing.append(match.group(0))
    return missing


def test_every_test_the_docs_cite_exists_in_the_module_cited() -> None:
    tests = _tests_by_module()
    assert len(tests) > 120  # the walk found the suite
    cited = 0
    missing: dict[str, list[str]] = {}
    for doc in sorted([*(ROOT / "docs").glob("*.md"), *ROOT.glob("*.md")]):
        text = doc.read_text(encoding="utf-8")
        cited += len(CITATION.findall(text))
        if found := _missing(text, tests):
            missing[doc.name] = found
    assert cited > 200  # the docs' citations were read
    assert missing == {}


def test_a_moved_or_renamed_test_is_a_missing_citation() -> None:
    tests = {"test_a.py": {"test_one", "test_two_parts"}}
    text = (
        "`test_a.py::test_one`, `tests/integration/test_a.py::test_two_parts[x]`,"
        " `test_a.py::test_two_...`, `test_b.py::test_one`, `test_a.py::test_three`"
    )
    assert _missing(text, tests) == ["test_b.py::test_one", "test_a.py::test_three"]
