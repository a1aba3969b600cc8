"""Claimed keys: an idempotency key or a refund id, claimed once by one command."""

from __future__ import annotations

from collections.abc import Collection

from eventsourcing.domain import Aggregate

from ledger.domain import events as ev
from ledger.domain import ids
from ledger.domain.errors import Conflict
from ledger.domain.topics import topic


@topic("CommandKey")
class CommandKey(Aggregate):
    """A claimed idempotency key or refund id, with the fingerprint of its command."""

    def __init__(
        self, namespace: str, key: str, command_type: str, fingerprint: str, occurred_at: str
    ) -> None:
        self.namespace = namespace
        self.key = key
        self.command_type = command_type
        self.fingerprint = fingerprint

    @classmethod
    def claim(
        cls, namespace: str, key: str, command_type: str, fingerprint: str, occurred_at: str
    ) -> CommandKey:
        """The key's claim: the log's primary key lets exactly one command make it."""
        return cls._create(
            ev.CommandKeyClaimed,
            id=ids.command_key_id(namespace, key),
            namespace=namespace,
            key=key,
            command_type=command_type,
            fingerprint=fingerprint,
            occurred_at=occurred_at,
        )

    def check_same(self, forms: Collection[str], field: str) -> None:
        """``forms``: the fingerprints under which the command is the same command."""
        if self.fingerprint not in forms:
            raise Conflict(
                f"{field} {self.key!r} was already used by a different {self.command_type} command",
                field,
            )
