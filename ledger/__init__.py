"""ledger: an event-sourced purchase and access ledger on PostgreSQL.

The typed API::

    import ledger
    settings = ledger.settings()                 # LEDGER_DATABASE_URL or the embedded server
    ledger.upgrade(settings)                     # migrations
    with ledger.open_ledger(settings) as app:    # the write side
        ledger.append(app, ledger.RegisterUser(user_id="u1"))
        ledger.append(app, ledger.RegisterUser(user_id="u2").stamped("http", "req-7"))
    for record in ledger.read_events(settings, after=0):   # the log as a stream
        print(record.position, record.topic, record.data)

The names are loaded when first used, so importing ``ledger.domain`` (as the
projections do) or one module of the package does not load the write side.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledger.api import (
        append,
        append_lines,
        observe_groups,
        open_ledger,
        parse_lines,
        settings,
        upgrade,
    )
    from ledger.commands.access import GrantAccess, RecordPlayback, RevokeAccess
    from ledger.commands.base import Command
    from ledger.commands.catalogue import (
        DeleteContent,
        DeleteUser,
        PublishContent,
        RegisterOrganization,
        RegisterUser,
    )
    from ledger.commands.parsing import parse_command
    from ledger.commands.purchases import (
        CompletePurchase,
        FailPurchase,
        RefundPurchase,
        StartPurchase,
    )
    from ledger.commands.results import Result
    from ledger.config import Settings
    from ledger.domain.errors import (
        Conflict,
        InvalidState,
        NoAccess,
        NotFound,
        Rejected,
        ValidationFailed,
    )
    from ledger.domain.provenance import Provenance
    from ledger.errors import ConfigurationError
    from ledger.log.recorder import LockTimeout
    from ledger.reading.consumers import Consumer, ConsumerRun, consumer_position, run_consumer
    from ledger.reading.stream import (
        Backoff,
        EventBatch,
        EventRecord,
        ProvenanceFilter,
        read_batches,
        read_events,
    )
    from ledger.service import Ledger
    from ledger.service.group_commit import LedgerClosed, Overloaded

# where each name lives: it is imported from there when first used
_MODULES: dict[str, tuple[str, ...]] = {
    "ledger.api": (
        "append",
        "append_lines",
        "observe_groups",
        "open_ledger",
        "parse_lines",
        "settings",
        "upgrade",
    ),
    "ledger.commands.access": ("GrantAccess", "RecordPlayback", "RevokeAccess"),
    "ledger.commands.base": ("Command",),
    "ledger.commands.catalogue": (
        "DeleteContent",
        "DeleteUser",
        "PublishContent",
        "RegisterOrganization",
        "RegisterUser",
    ),
    "ledger.commands.parsing": ("parse_command",),
    "ledger.commands.purchases": (
        "CompletePurchase",
        "FailPurchase",
        "RefundPurchase",
        "StartPurchase",
    ),
    "ledger.config": ("Settings",),
    "ledger.reading.consumers": ("Consumer", "ConsumerRun", "consumer_position", "run_consumer"),
    "ledger.domain.errors": (
        "Conflict",
        "InvalidState",
        "NoAccess",
        "NotFound",
        "Rejected",
        "ValidationFailed",
    ),
    "ledger.errors": ("ConfigurationError",),
    "ledger.service.group_commit": ("LedgerClosed", "Overloaded"),
    "ledger.domain.provenance": ("Provenance",),
    "ledger.commands.results": ("Result",),
    "ledger.service": ("Ledger",),
    "ledger.log.recorder": ("LockTimeout",),
    "ledger.reading.stream": (
        "Backoff",
        "EventBatch",
        "EventRecord",
        "ProvenanceFilter",
        "read_batches",
        "read_events",
    ),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "Backoff",
    "Command",
    "CompletePurchase",
    "ConfigurationError",
    "Conflict",
    "Consumer",
    "ConsumerRun",
    "DeleteContent",
    "DeleteUser",
    "EventBatch",
    "EventRecord",
    "FailPurchase",
    "GrantAccess",
    "InvalidState",
    "Ledger",
    "LedgerClosed",
    "LockTimeout",
    "NoAccess",
    "NotFound",
    "Overloaded",
    "Provenance",
    "ProvenanceFilter",
    "PublishContent",
    "RecordPlayback",
    "RefundPurchase",
    "RegisterOrganization",
    "RegisterUser",
    "Rejected",
    "Result",
    "RevokeAccess",
    "Settings",
    "StartPurchase",
    "ValidationFailed",
    "append",
    "append_lines",
    "consumer_position",
    "observe_groups",
    "open_ledger",
    "parse_command",
    "parse_lines",
    "read_batches",
    "read_events",
    "run_consumer",
    "settings",
    "upgrade",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
