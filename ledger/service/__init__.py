"""The write side: commands in, events and projected rows out.

The public face is ``Ledger`` (the application); the rest are its rooms, private to
it: ``application`` (transactions, retries), ``unit_of_work``, ``cache`` (aggregates
kept between decisions, and the ``DecisionStore`` they are read from), ``registry``
(one registration per command type) and the handlers by area: ``catalogue``
(organizations, users, content), ``purchases``, ``access`` (access and playback).
"""

from ledger.domain.errors import Duplicate

# the handler modules register their commands when imported
from ledger.service import access, catalogue, purchases  # noqa: F401
from ledger.service.application import MAX_ATTEMPTS, Ledger
from ledger.service.cache import AggregateCache, DecisionStore
from ledger.service.unit_of_work import UnitOfWork

__all__ = [
    "MAX_ATTEMPTS",
    "AggregateCache",
    "DecisionStore",
    "Duplicate",
    "Ledger",
    "UnitOfWork",
]
