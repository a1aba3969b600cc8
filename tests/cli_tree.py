"""Every command of the ``ledger`` parser, with its options: for the tests that walk the CLI."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ledger.cli import build_parser


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]  # e.g. ("db", "status")
    parser: argparse.ArgumentParser

    @property
    def leaf(self) -> bool:
        return not any(isinstance(a, argparse._SubParsersAction) for a in self.parser._actions)

    def options(self) -> list[argparse.Action]:
        """Its visible options (not positionals, not --help)."""
        return [
            action
            for action in self.parser._actions
            if action.option_strings
            and action.help != argparse.SUPPRESS
            and not isinstance(action, argparse._HelpAction)
        ]


def commands() -> list[Command]:
    """The top-level parser and every group and subcommand below it."""
    found: list[Command] = []

    def walk(words: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
        found.append(Command(words, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk((*words, name), sub)

    walk((), build_parser())
    return found
