"""What a request gives besides its body, held to the rules of the commands' fields: ids
in paths as a command's ids (no control or format character, not blank...), and query
parameters that the endpoint declares, each once (a misspelt ``?Atomic=true`` or a
contradictory ``?atomic=true&atomic=false`` would otherwise be ignored or half-applied),
with no control or format character. Each break is a 422 naming the parameter."""

from __future__ import annotations

import unicodedata

from starlette.requests import Request

from ledger.commands.fields import check_id
from ledger.http.answers import BadRequest

REPEATABLE = frozenset({"topic"})  # the query parameters that are lists


def checked_id(value: str, field: str) -> str:
    try:
        return check_id(value)
    except ValueError as error:
        raise BadRequest(f"{field}: {error}", field) from None


def _refuse_invisible(value: str, name: str) -> None:
    if value.isprintable():
        return
    for at, char in enumerate(value, start=1):
        category = unicodedata.category(char)
        if category in ("Cc", "Cf"):
            kind = "control" if category == "Cc" else "format"
            raise BadRequest(
                f"{name}: must not contain {kind} characters (U+{ord(char):04X} at character {at})",
                name,
            )


async def strict_query(request: Request) -> None:
    """A router's dependency: every query parameter is one the endpoint declares, given
    once unless it is a list, and holds no control or format character."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    known = {param.alias for param in dependant.query_params} if dependant else set()
    seen: set[str] = set()
    for name, value in request.query_params.multi_items():
        if name not in known:
            takes = ", ".join(sorted(known)) if known else "none"
            raise BadRequest(
                f"{name[:100]}: not a query parameter of this endpoint (it takes: {takes})",
                name[:100],
            )
        if name in seen and name not in REPEATABLE:
            raise BadRequest(f"{name}: given more than once", name)
        seen.add(name)
        _refuse_invisible(value, name)
