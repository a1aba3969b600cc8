"""Identifiers derived from natural keys.

The same history must always give the same ids, so that a rebuild reproduces every
row: aggregate ids and projected row ids are uuid5 of the natural key, in a
namespace of our own. A separator that cannot occur in a key keeps composite keys
unambiguous.
"""

from __future__ import annotations

from functools import lru_cache
from uuid import UUID, uuid5

NAMESPACE = UUID("6f1c1a9e-4b57-5d1e-9a4c-2b7f3d0e8c41")
_SEP = "\x1f"


@lru_cache(maxsize=1 << 16)  # a rebuild derives the same id for every heartbeat of a row
def derive(kind: str, *parts: str) -> UUID:
    return uuid5(NAMESPACE, _SEP.join((kind, *parts)))


def organization_id(organization: str) -> UUID:
    return derive("organization", organization)


def user_id(user: str) -> UUID:
    return derive("user", user)


def departure_id(user: str, organization: str) -> UUID:
    return derive("departure", user, organization)


def content_id(content: str) -> UUID:
    return derive("content", content)


def purchase_id(payment_intent: str) -> UUID:
    return derive("purchase", payment_intent)


def access_id(user: str, content: str) -> UUID:
    return derive("access", user, content)


def playback_id(user: str, content: str) -> UUID:
    return derive("playback", user, content)


def command_key_id(namespace: str, key: str) -> UUID:
    return derive("key", namespace, key)
