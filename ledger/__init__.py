"""ledger: an event-sourced purchase and access ledger on PostgreSQL.

The typed API::

    import ledger
    settings = ledger.settings()                 # LEDGER_DATABASE_URL or the embedded server
    ledger.upgrade(settings)                     # migrations
    with ledger.open_ledger(settings) as app:    # the write side
        ledger.append(app, ledger.RegisterUser(user_id="u1"))
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
        append as append,
    )
    from ledger.api import (
        append_lines as append_lines,
    )
    from ledger.api import (
        open_ledger as open_ledger,
    )
    from ledger.api import (
        parse_lines as parse_lines,
    )
    from ledger.api import (
        settings as settings,
    )
    from ledger.api import (
        upgrade as upgrade,
    )
    from ledger.commands import (
        Command as Command,
    )
    from ledger.commands import (
        CompletePurchase as CompletePurchase,
    )
    from ledger.commands import (
        DeleteContent as DeleteContent,
    )
    from ledger.commands import (
        DeleteUser as DeleteUser,
    )
    from ledger.commands import (
        FailPurchase as FailPurchase,
    )
    from ledger.commands import (
        GrantAccess as GrantAccess,
    )
    from ledger.commands import (
        PublishContent as PublishContent,
    )
    from ledger.commands import (
        RecordPlayback as RecordPlayback,
    )
    from ledger.commands import (
        RefundPurchase as RefundPurchase,
    )
    from ledger.commands import (
        RegisterOrganization as RegisterOrganization,
    )
    from ledger.commands import (
        RegisterUser as RegisterUser,
    )
    from ledger.commands import (
        RevokeAccess as RevokeAccess,
    )
    from ledger.commands import (
        StartPurchase as StartPurchase,
    )
    from ledger.commands import (
        parse_command as parse_command,
    )
    from ledger.config import (
        Settings as Settings,
    )
    from ledger.consumers import (
        Consumer as Consumer,
    )
    from ledger.consumers import (
        ConsumerRun as ConsumerRun,
    )
    from ledger.consumers import (
        consumer_position as consumer_position,
    )
    from ledger.consumers import (
        run_consumer as run_consumer,
    )
    from ledger.domain.errors import (
        Conflict as Conflict,
    )
    from ledger.domain.errors import (
        InvalidState as InvalidState,
    )
    from ledger.domain.errors import (
        NoAccess as NoAccess,
    )
    from ledger.domain.errors import (
        NotFound as NotFound,
    )
    from ledger.domain.errors import (
        Rejected as Rejected,
    )
    from ledger.domain.errors import (
        ValidationFailed as ValidationFailed,
    )
    from ledger.errors import (
        ConfigurationError as ConfigurationError,
    )
    from ledger.results import (
        Result as Result,
    )
    from ledger.service import (
        Ledger as Ledger,
    )
    from ledger.store import (
        LockTimeout as LockTimeout,
    )
    from ledger.stream import (
        Backoff as Backoff,
    )
    from ledger.stream import (
        EventBatch as EventBatch,
    )
    from ledger.stream import (
        EventRecord as EventRecord,
    )
    from ledger.stream import (
        read_batches as read_batches,
    )
    from ledger.stream import (
        read_events as read_events,
    )

_EXPORTS: dict[str, str] = {
    "append": "ledger.api",
    "append_lines": "ledger.api",
    "open_ledger": "ledger.api",
    "parse_lines": "ledger.api",
    "settings": "ledger.api",
    "upgrade": "ledger.api",
    "Command": "ledger.commands",
    "CompletePurchase": "ledger.commands",
    "DeleteContent": "ledger.commands",
    "DeleteUser": "ledger.commands",
    "FailPurchase": "ledger.commands",
    "GrantAccess": "ledger.commands",
    "PublishContent": "ledger.commands",
    "RecordPlayback": "ledger.commands",
    "RefundPurchase": "ledger.commands",
    "RegisterOrganization": "ledger.commands",
    "RegisterUser": "ledger.commands",
    "RevokeAccess": "ledger.commands",
    "StartPurchase": "ledger.commands",
    "parse_command": "ledger.commands",
    "ConfigurationError": "ledger.errors",
    "Settings": "ledger.config",
    "Consumer": "ledger.consumers",
    "ConsumerRun": "ledger.consumers",
    "consumer_position": "ledger.consumers",
    "run_consumer": "ledger.consumers",
    "Conflict": "ledger.domain.errors",
    "InvalidState": "ledger.domain.errors",
    "NoAccess": "ledger.domain.errors",
    "NotFound": "ledger.domain.errors",
    "Rejected": "ledger.domain.errors",
    "ValidationFailed": "ledger.domain.errors",
    "Result": "ledger.results",
    "Ledger": "ledger.service",
    "LockTimeout": "ledger.store",
    "Backoff": "ledger.stream",
    "EventBatch": "ledger.stream",
    "EventRecord": "ledger.stream",
    "read_batches": "ledger.stream",
    "read_events": "ledger.stream",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
