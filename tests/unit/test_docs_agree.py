"""The documents agree with the code where issue 24 (finding 11) found them apart: one table
of exit statuses, with its exceptions, referenced from the README and stream.md; the
status fields of ``projections status --format json``; the keyless heartbeat's
``validation_error``; docs/stripe.md in the README's list; and the test command's own
embedded home, whatever ``LEDGER_HOME`` the user exported."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from ledger.upkeep.status import ProjectionStatus

ROOT = Path(__file__).parents[2]
ANCHOR = "cli.md#exit-statuses-and-errors"


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else None]


def test_one_table_of_exit_statuses_with_its_exceptions_referenced_everywhere() -> None:
    cli = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    table = section(cli, "## Exit statuses and errors")
    for status in ("| 0 |", "| 1 |", "| 2 |", "| 130 |", "| 143 |", "| 141 |"):
        assert status in table, status
    exceptions = {
        row.split("|")[1].strip(): [cell.strip() for cell in row.split("|")[2:4]]
        for row in table.splitlines()
        if row.startswith("| `ledger ")
    }
    assert exceptions["`ledger events`"] == ["0", "0"]
    assert exceptions["`ledger serve`"][0] == "0"
    assert f"docs/{ANCHOR}" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert ANCHOR in (ROOT / "docs" / "stream.md").read_text(encoding="utf-8")
    events = section(cli, "### `ledger events`")
    assert "130" in events and "#exit-statuses-and-errors" in events


def test_the_events_command_exits_as_the_exceptions_say() -> None:
    """The code behind the exception: SIGTERM and a closed pipe end ``ledger events`` (and
    ``ledger playback events``, which share the loop) 0."""
    source = (ROOT / "ledger" / "cli" / "streaming.py").read_text(encoding="utf-8")
    assert "return EXIT_INTERRUPTED if stopped.signal == signal.SIGINT else EXIT_OK" in source
    assert re.search(r"except BrokenPipeError:\n(.*\n){0,2}\s+return EXIT_OK", source)


def test_the_status_fields_are_documented() -> None:
    cli = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    status = section(cli, "### `ledger projections status")
    for field in dataclasses.fields(ProjectionStatus):
        assert f"`{field.name}`" in status, field.name
    assert "`state`" in status and "`current`" in status and "`stale`" in status


def test_the_keyless_heartbeat_is_a_listed_validation_error() -> None:
    cli = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    row = next(line for line in cli.splitlines() if line.startswith("| `validation_error` |"))
    assert "`playback.progress`" in row and "neither `occurred_at` nor `idempotency_key`" in row
    assert "format character" in row


def test_the_readme_lists_every_document() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for document in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{document.name})" in readme, document.name


def test_the_suite_makes_its_own_embedded_home_whatever_is_exported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``tests/conftest.py``: without a test database URL, the run's home is a new
    temporary directory, not the exported LEDGER_HOME (whose server it would stop)."""
    from tests import conftest

    monkeypatch.delenv("LEDGER_TEST_DATABASE_URL", raising=False)
    monkeypatch.setenv("LEDGER_HOME", "/home/someone/.local/share/ledger")
    made = list(conftest._HOMES_MADE)
    conftest.pytest_configure(SimpleNamespace())  # type: ignore[arg-type]
    home = os.environ["LEDGER_HOME"]
    try:
        assert home != "/home/someone/.local/share/ledger"
        assert Path(home).is_dir() and Path(home).name.startswith("ledger-test-home-")
        assert not any(Path(home).iterdir())
    finally:
        conftest._HOMES_MADE[:] = made
        shutil.rmtree(home, ignore_errors=True)
    # an xdist worker takes the controller's home, as given
    monkeypatch.setenv("LEDGER_HOME", "/tmp/the-controllers-home")
    conftest.pytest_configure(SimpleNamespace(workerinput={}))  # type: ignore[arg-type]
    assert os.environ["LEDGER_HOME"] == "/tmp/the-controllers-home"
