"""The house keeps its shape: small modules (the tests' as well), a top of ``ledger/`` that
reads as the architecture (docs/architecture.md), one table of the public names, and a
domain that loads nothing else."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import ledger

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400
# the only modules at the top of ledger/: the rest lives in its package
TOP_MODULES = {"__init__.py", "__main__.py", "api.py", "config.py", "errors.py"}


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def _too_long(modules: list[Path]) -> dict[str, int]:
    return {str(p.relative_to(ROOT)): _lines(p) for p in modules if _lines(p) > MAX_LINES}


def test_no_module_of_the_ledger_or_the_projections_exceeds_400_lines() -> None:
    modules = sorted([*(ROOT / "ledger").rglob("*.py"), *(ROOT / "projections").rglob("*.py")])
    assert len(modules) > 50  # the walk found the tree
    assert _too_long(modules) == {}


def test_no_module_of_the_tests_exceeds_400_lines() -> None:
    """Every ``.py`` under ``tests/``: the test modules, their support modules (``tests/*.py``),
    the property model and the golden logs' generator. A module that grows past the bound is
    split by theme, its shared helpers in a support module (docs/testing.md, "How the suite is organised")."""
    modules = sorted((ROOT / "tests").rglob("*.py"))
    assert len(modules) > 150  # the walk found the tree
    assert ROOT / "tests" / "unit" / "test_layout.py" in modules
    assert _too_long(modules) == {}


def test_the_top_of_the_ledger_holds_only_its_five_modules() -> None:
    assert {p.name for p in (ROOT / "ledger").glob("*.py")} == TOP_MODULES


def test_each_public_name_is_served_from_the_module_the_table_names() -> None:
    table = ledger._HOME
    assert ledger.__all__ == sorted(table)
    assert len(table) >= 45  # every name of the typed API, read from the TYPE_CHECKING block
    for name, module in table.items():
        assert getattr(ledger, name) is getattr(importlib.import_module(module), name), name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        getattr(ledger, "no_such_name")  # noqa: B009


def _loaded_after(statement: str) -> list[str]:
    """The modules of the ledger and the projections a fresh interpreter has loaded after
    ``statement``."""
    probe = (
        f"{statement}\nimport sys\n"
        "print('\\n'.join(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('ledger', 'projections'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return done.stdout.split()


def test_importing_the_ledger_loads_none_of_its_modules() -> None:
    assert _loaded_after("import ledger") == ["ledger"]


def test_importing_the_domain_as_the_projections_do_loads_nothing_else() -> None:
    loaded = _loaded_after("import ledger.domain.aggregates, ledger.domain.events")
    assert [m for m in loaded if m != "ledger" and not m.startswith("ledger.domain")] == []
    loaded = _loaded_after("import projections.registry")
    assert [
        m for m in loaded if m.startswith("ledger.") and not m.startswith("ledger.domain")
    ] == []
