"""docs/cli.md is the reference of the ``ledger`` command: it names every command and every flag
that ``--help`` shows, so the two cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli_tree import Command, commands

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def documented(flag: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


@pytest.mark.parametrize("command", commands(), ids=lambda c: " ".join(("ledger", *c.words)))
def test_every_flag_of_the_help_is_in_the_reference(command: Command) -> None:
    text = REFERENCE.read_text()
    shown = set(FLAG.findall(command.parser.format_help()))
    assert shown, "a --help always shows at least --help"
    missing = sorted(flag for flag in shown if not documented(flag, text))
    assert missing == [], f"docs/cli.md does not mention {missing}"


@pytest.mark.parametrize(
    "command", [c for c in commands() if c.words], ids=lambda c: " ".join(c.words)
)
def test_every_command_has_its_section(command: Command) -> None:
    text = REFERENCE.read_text()
    assert f"ledger {' '.join(command.words)}" in text


def test_the_readme_points_to_the_reference_not_to_the_contract() -> None:
    readme = (REFERENCE.parents[1] / "README.md").read_text()
    assert "docs/cli.md" in readme
    assert "CONTRACT" not in readme and "shared/" not in readme
