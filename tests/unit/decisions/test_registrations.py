"""One registration per concept: every command has its handler, every event its
projection or a place among the deliberately unprojected, and the projections stand on
the domain alone (never on the write side, nor on the database's upkeep), which stands on
nothing above it."""

from __future__ import annotations

import ast
from pathlib import Path

from ledger.commands.by_type import COMMAND_TYPES
from ledger.commands.catalogue import Part
from ledger.domain import events as ev
from ledger.service.registry import REGISTRY
from projections.registry import PROJECTED_TOPICS, PROJECTIONS, UNPROJECTED

ROOT = Path(__file__).resolve().parents[3]


def test_every_command_type_has_exactly_one_handler() -> None:
    # and the commands the service makes itself (the parts of a deletion), never parsed
    assert set(REGISTRY) == set(COMMAND_TYPES.values()) | set(Part.__subclasses__())
    assert not set(Part.__subclasses__()) & set(COMMAND_TYPES.values())


def test_every_event_class_is_projected_or_deliberately_unprojected() -> None:
    projected = {cls for module in PROJECTIONS for cls in module.EVENTS}
    catalogue = set(ev.EVENTS_BY_TOPIC.values())
    assert catalogue - projected - set(UNPROJECTED) == set()
    assert projected & set(UNPROJECTED) == set()
    assert set(PROJECTED_TOPICS) == {str(getattr(cls, "TOPIC")) for cls in projected}  # noqa: B009


def _ledger_imports_outside_the_domain(folder: Path) -> list[str]:
    found = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            found += [
                f"{path.name}: {n}"
                for n in names
                if (n == "ledger" or n.startswith("ledger.")) and not n.startswith("ledger.domain")
            ]
    return found


def test_the_projections_import_nothing_of_the_ledger_but_its_domain() -> None:
    assert _ledger_imports_outside_the_domain(ROOT / "projections") == []


def test_the_domain_imports_nothing_of_the_ledger_outside_it() -> None:
    """The layer the projections stand on must not stand on anything above it, or they
    would too (``ledger.provenance`` once was such an import)."""
    assert _ledger_imports_outside_the_domain(ROOT / "ledger" / "domain") == []
