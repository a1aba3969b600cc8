"""The shape of each stored event: what a state must carry to decode into its class.

A stored event is a topic and a JSON state. The event classes of
``ledger.domain.events`` say what their states hold; from them this module derives,
per topic, the *required* fields and the JSON type of each: every field of the class
without a default (a field added later with a default is optional, so logs written
before it still decode) or marked ``stamped`` (provenance, which every event of the
current version carries), minus the two the recorder keeps in columns (``originator_id``,
``originator_version``). Each earlier version of a topic has the shape of the next, less
the fields its upcaster step adds (``versions``). Two things check the shapes:

* the database, at insert (migrations ``log_guards`` and ``event_provenance``: a
  catalogue table of every version and a trigger), so that no role that may append can
  store an event that does not decode, nor a new one of a superseded version;
* the readers of the log in Python (``check``), so that an event stored behind the
  trigger's back (a superuser who disabled it) stops a rebuild or an audit with one line
  naming its position and topic instead of a traceback deep in a projection.

The test ``tests/integration/test_event_catalogue.py`` keeps the database's catalogue
equal to ``catalogue()``; ``python -m ledger.log.shapes`` prints the SQL rows for a
migration that changes the catalogue.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
import types
import typing
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

import orjson

from ledger.domain import upcasters
from ledger.domain.events import EVENTS_BY_TOPIC
from ledger.errors import ConfigurationError

IN_COLUMNS = frozenset({"originator_id", "originator_version"})
# JSON types as jsonb_typeof names them, plus "integer": a number without a fraction
_KINDS: dict[Any, str] = {
    str: "string",
    int: "integer",
    bool: "boolean",
    float: "number",
    dict: "object",
    list: "array",
    datetime: "object",  # the library stores a datetime as {"_type_": ..., "_data_": ...}
    type(None): "null",
}

Shape = dict[str, tuple[str, ...]]  # field -> the JSON types it may have


class UndecodableEvent(ConfigurationError):
    """A stored event whose state does not decode into its class (exit status 2).

    Raised by the readers of the log; the message names the position and the topic.
    """

    def __init__(self, position: int, topic: str, problem: str) -> None:
        self.position, self.topic, self.problem = position, topic, problem
        super().__init__(
            f"the event at position {position} ({topic}) does not decode: {problem}; "
            "`ledger audit verify` checks the whole log"
        )


def _kinds(annotation: Any) -> tuple[str, ...]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        found: list[str] = []
        for member in typing.get_args(annotation):
            found.extend(k for k in _kinds(member) if k not in found)
        return tuple(found)
    kind = _KINDS.get(annotation)
    if kind is None:
        raise TypeError(f"no JSON type is known for the annotation {annotation!r}")
    return (kind,)


def shape(cls: type) -> Shape:
    """The required fields of an event class and the JSON types each may have."""
    hints = typing.get_type_hints(cls)
    required: Shape = {}
    for item in dataclasses.fields(cls):
        if item.name in IN_COLUMNS:
            continue
        if (
            item.default is not dataclasses.MISSING
            or item.default_factory is not dataclasses.MISSING
        ) and not item.metadata.get("stamped"):
            continue
        required[item.name] = _kinds(hints[item.name])
    return required


@cache
def catalogue() -> dict[str, Shape]:
    """Every topic of the catalogue with the shape of its current version."""
    return {topic: shape(cls) for topic, cls in EVENTS_BY_TOPIC.items()}


@cache
def versions() -> dict[tuple[str, int], Shape]:
    """Every version of every topic with its shape: the current one from the class, each
    earlier one from the one after it, less the fields its upcaster adds."""
    found: dict[tuple[str, int], Shape] = {}
    for topic, current in catalogue().items():
        later = current
        found[(topic, upcasters.current_version(topic))] = later
        for step in reversed(upcasters.chain(topic)):
            later = {k: v for k, v in later.items() if k not in step.adds}
            found[(topic, step.to - 1)] = later
    return dict(sorted(found.items()))


_MISSING = object()
_ACCEPTS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "object": (dict,),
    "array": (list,),
    "number": (int, float),
    "integer": (int,),  # and an integral float, which the slow path makes an int
}


@dataclasses.dataclass(frozen=True)
class _Fast:
    """A topic's required fields: a getter of their values, and every tuple of their
    Python types that decodes as it is."""

    names: tuple[str, ...]
    values: Callable[[dict[str, Any]], tuple[Any, ...]]
    types: frozenset[tuple[type, ...]]
    version: int  # the topic's current version


def _getter(names: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) == 1:
        return lambda state: (state[names[0]],)
    return operator.itemgetter(*names)


@cache
def _fast() -> dict[str, _Fast]:
    found = {}
    for topic, required in catalogue().items():
        choices = [
            sorted({t for kind in kinds for t in _ACCEPTS[kind]}, key=str)
            for kinds in required.values()
        ]
        names = tuple(required)
        found[topic] = _Fast(
            names,
            _getter(names),
            frozenset(itertools.product(*choices)),
            upcasters.current_version(topic),
        )
    return found


def check(position: int, topic: str, state: bytes) -> dict[str, Any]:
    """The decoded state of a stored event; ``UndecodableEvent`` if it is not one.

    It runs once per event a rebuild reads: the usual case is one lookup of the tuple
    of the fields' types (built in C) among those that decode. An event stored as an
    earlier version of its topic is upcast first, so every reader gets the current
    fields (``ledger.domain.upcasters``); ``class_version`` is not among them.
    """
    fast = _fast().get(topic)
    if fast is None:
        raise UndecodableEvent(position, topic, "its topic is not in the event catalogue")
    try:
        decoded = orjson.loads(state)
    except orjson.JSONDecodeError:
        raise UndecodableEvent(position, topic, "its state is not UTF-8 JSON") from None
    if type(decoded) is not dict:
        raise UndecodableEvent(position, topic, "its state is not a JSON object")
    stored = decoded.pop("class_version", 1)
    if stored.__class__ is not int or stored != fast.version:  # an earlier version
        decoded["class_version"] = stored
        try:
            upcasters.upcast(topic, decoded)
        except upcasters.UnknownVersion as error:
            raise UndecodableEvent(position, topic, str(error)) from None
    try:
        if tuple(map(type, fast.values(decoded))) in fast.types:
            return decoded
    except KeyError:
        pass
    return _slow_check(position, topic, decoded)


def _slow_check(position: int, topic: str, decoded: dict[str, Any]) -> dict[str, Any]:
    """Names the first field that does not decode. An integral float where an integer
    is required (jsonb, hence the insert trigger, takes ``1e3`` or ``5.0`` as a whole
    number) is kept, as an int."""
    for name, kinds in catalogue()[topic].items():
        value = decoded.get(name, _MISSING)
        if value is _MISSING:
            raise UndecodableEvent(position, topic, f"the field {name} is missing")
        kind = type(value)
        if any(kind in _ACCEPTS[k] for k in kinds):
            continue
        if kind is float and "integer" in kinds and value.is_integer():
            decoded[name] = int(value)
            continue
        raise UndecodableEvent(position, topic, f"the field {name} is not {' or '.join(kinds)}")
    return decoded


def problem(topic: str, state: bytes, *, new: bool = False) -> str | None:
    """What keeps a stored state from decoding into an event of ``topic``; None if nothing.

    ``new``: as the database judges an event inserted now, which must be of the topic's
    current version (an earlier one is history: only the readers take it)."""
    try:
        check(0, topic, state)
        if new:
            version = upcasters.stored_version(orjson.loads(state))
            current = upcasters.current_version(topic)
            if version != current:
                return f"its version {version} is not the current one ({current})"
    except UndecodableEvent as error:
        return error.problem
    return None


def catalogue_rows() -> str:
    """Every version of the catalogue as the VALUES (topic, version, fields, shape) of an
    INSERT into ``ledger_event_catalogue``."""
    rows = []
    for (topic, version), required in versions().items():
        fields = orjson.dumps({k: list(v) for k, v in required.items()}).decode()
        rows.append(f"    ('{topic}', {version}, '{fields}', '{jsonpath(required)}')")
    return ",\n".join(rows)


def jsonpath(required: Shape) -> str:
    """One SQL/JSON path predicate that holds exactly when every required field has
    one of its types: evaluated in C by ``jsonb_path_match``, it keeps the insert
    trigger cheap."""
    clauses = []
    for name, kinds in required.items():
        field = f'$."{name}"'
        tests = []
        for kind in kinds:
            if kind == "integer":
                tests.append(f'({field}.type() == "number" && {field}.floor() == {field})')
            else:
                tests.append(f'{field}.type() == "{kind}"')
        clauses.append(tests[0] if len(tests) == 1 else "(" + " || ".join(tests) + ")")
    return " && ".join(clauses) if clauses else "true"


if __name__ == "__main__":
    print(catalogue_rows())
