"""What every command is: a strict, frozen model whose payload has a fingerprint.

No unknown fields; ``occurred_at`` and ``idempotency_key`` on every command; where it
came from (``stamped``) kept outside its JSON and its fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, PrivateAttr

from ledger.commands.fields import BusinessTime, Id
from ledger.domain import clock
from ledger.domain.provenance import DEFAULT, Provenance


@dataclass(frozen=True)
class Fingerprint:
    """A command's payload identity, and the forms a redelivery may match.

    ``canonical`` (recorded in the events) leaves out every optional field whose value
    the ledger derives anyway (``organization_id`` equal to the content's
    organization...), so a command and its redelivery with that field added are the
    same command. ``forms`` also holds the payload as given and with the derived values
    filled in: a fingerprint recorded by an earlier version, which hashed the payload as
    given, still recognises its redeliveries in either shape.
    """

    canonical: str
    forms: frozenset[str]

    def matches(self, recorded: str) -> bool:
        return recorded in self.forms


def _digest(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return clock.canonical(value)
    if isinstance(value, UUID):
        return str(value)  # what orjson writes for a UUID: the digest is unchanged
    return value


class Command(BaseModel):
    """Fields every command may carry."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    occurred_at: BusinessTime | None = None
    idempotency_key: Id | None = None
    # where the command came from: not a field, so neither its JSON nor its fingerprint
    # (a factory: pydantic deep-copies a default at every construction, a factory's is kept)
    _provenance: Provenance = PrivateAttr(default_factory=lambda: DEFAULT)

    @property
    def provenance(self) -> Provenance:
        # read from pydantic's slot: ``self._provenance`` goes through ``__getattr__``,
        # twenty times slower, on every command's path
        private = self.__pydantic_private__
        assert private is not None
        provenance: Provenance = private["_provenance"]
        return provenance

    def stamped(self, source: str, correlation_id: str | None) -> Self:
        """A copy of the command that came from ``source`` (``cli``, ``api``, ``http``,
        ``stripe``), answering ``correlation_id``; ``ValidationFailed`` names a bad one.
        Every event the command records carries both."""
        copy = self.model_copy()
        copy._provenance = Provenance(source, correlation_id)
        return copy

    def payload(self) -> dict[str, Any]:
        """The fields given, as plain JSON values, without ``occurred_at`` and
        ``idempotency_key``: a redelivered command whose time was defaulted to "now" is
        still the same command."""
        return {
            name: _plain(value)
            for name, value in self.model_dump(exclude={"occurred_at", "idempotency_key"}).items()
            if value is not None
        }

    def fingerprint(self) -> str:
        """Identity of the payload as given: equal for a redelivery, different for any
        other command (for commands with no derived field, the canonical one)."""
        return _digest(self.payload())

    def fingerprints(self, derived: Mapping[str, Any] | None = None) -> Fingerprint:
        """The canonical fingerprint given the values the ledger derives for this
        command's optional fields (``derived``, plain JSON values), and its forms."""
        given = self.payload()
        if not derived:
            digest = _digest(given)
            return Fingerprint(digest, frozenset((digest,)))
        dropped = {k: v for k, v in given.items() if not (k in derived and derived[k] == v)}
        filled = {**derived, **given}
        canonical = _digest(dropped)
        return Fingerprint(canonical, frozenset((canonical, _digest(filled), _digest(given))))

    def identity(self, occurred_at: str, fingerprint: str | None = None) -> str:
        """The command's payload at its moment: what a redelivery repeats exactly.
        Commands without a natural key (grant, revoke, playback) are deduplicated
        by it. ``fingerprint``: this command's, if the caller has it already (a
        heartbeat's path computes it once: hashing the payload is most of its cost)."""
        given = fingerprint if fingerprint is not None else self.fingerprint()
        return hashlib.sha256(f"{given}@{occurred_at}".encode()).hexdigest()

    def occurred(self, default: str) -> str:
        return clock.canonical(self.occurred_at) if self.occurred_at is not None else default
