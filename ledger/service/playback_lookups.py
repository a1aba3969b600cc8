"""What the playback store asks the money log (``ledger.playback``): why a user or content
is not live, the heartbeats the log recorded before the store, an idempotency key the log
holds. Each takes the service's repository (and its subjects), bound by ``Ledger``."""

from __future__ import annotations

from typing import Any

from eventsourcing.application import AggregateNotFoundError

from ledger.domain import ids
from ledger.domain.aggregates import CommandKey, Content, Playback, User
from ledger.privacy.subjects import Subjects


def not_live(repository: Any, subjects: Subjects, kind: str, entity_id: str) -> str:
    """Why a user or content without a row is not live, as the log's handlers say it."""
    if kind == "user":  # a person's aggregate is keyed by their subject (docs/privacy.md)
        name = subjects.subjects_of([entity_id]).get(entity_id, entity_id)
        aggregate_id = ids.user_id(name)
    else:
        aggregate_id = ids.content_id(entity_id)
    try:
        found: object = repository.get(aggregate_id)
    except AggregateNotFoundError:
        found = None
    if isinstance(found, User | Content) and found.deleted:
        return "was deleted"
    return "is not registered" if kind == "user" else "is not published"


def legacy(repository: Any, user_id: str, content_id: str) -> frozenset[str]:
    """The heartbeats the log recorded for the pair before the store (identities)."""
    try:
        playback: object = repository.get(ids.playback_id(user_id, content_id))
    except AggregateNotFoundError:
        return frozenset()
    return frozenset(playback.seen) if isinstance(playback, Playback) else frozenset()


def log_key(repository: Any, key: str) -> tuple[str, str] | None:
    """An idempotency key the money log holds (a money command's, or a heartbeat's from
    before the store): its fingerprint and command type."""
    try:
        claim: object = repository.get(ids.command_key_id("idempotency_key", key))
    except AggregateNotFoundError:
        return None
    if not isinstance(claim, CommandKey):
        return None
    return claim.fingerprint, claim.command_type
