"""Every command class by its ``type``.

A command is registered by being defined, in the module of what it acts on
(``catalogue``, ``purchases``, ``access``); its handler registers in ``ledger.service``.
"""

from __future__ import annotations

import functools
import operator
from typing import Annotated, Any

from pydantic import Field

# the modules that define the commands: imported for that
from ledger.commands import access, catalogue, purchases  # noqa: F401
from ledger.commands.base import Command

# what a command acts on, in the order of its life: how the types are listed (in the
# error that names them, in the OpenAPI document)
SUBJECTS = ("organization", "user", "content", "purchase", "access", "playback")


def _subject(model: type[Command]) -> int:
    subject = str(model.model_fields["type"].default).partition(".")[0]
    if subject not in SUBJECTS:
        raise TypeError(f"{model.__name__} acts on {subject!r}: add it to SUBJECTS")
    return SUBJECTS.index(subject)


def _command_types() -> dict[str, type[Command]]:
    """Every command class by its ``type``, by subject, each subject's in the order they
    are defined."""
    found: dict[str, type[Command]] = {}
    # a direct subclass without a ``type`` is a base of commands the service makes itself
    # (``catalogue.Part``): none of those is parsed or listed
    typed = [m for m in Command.__subclasses__() if "type" in m.model_fields]
    for model in sorted(typed, key=_subject):
        name = model.model_fields["type"].default
        if name in found:
            raise TypeError(f"two commands are named {name!r}")
        found[name] = model
    return found


COMMAND_TYPES: dict[str, type[Command]] = _command_types()

AnyCommand: Any = Annotated[
    functools.reduce(operator.or_, COMMAND_TYPES.values()), Field(discriminator="type")
]
"""Any command, told apart by its ``type`` (for pydantic, as a field of another model)."""
