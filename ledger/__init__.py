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
"""

from ledger.api import (
    append,
    append_lines,
    observe_groups,
    open_ledger,
    parse_lines,
    settings,
    upgrade,
)
from ledger.commands import (
    Command,
    CompletePurchase,
    DeleteContent,
    DeleteUser,
    FailPurchase,
    GrantAccess,
    PublishContent,
    RecordPlayback,
    RefundPurchase,
    RegisterOrganization,
    RegisterUser,
    RevokeAccess,
    StartPurchase,
    parse_command,
)
from ledger.config import ConfigurationError, Settings
from ledger.consumers import Consumer, ConsumerRun, consumer_position, run_consumer
from ledger.domain.errors import (
    Conflict,
    InvalidState,
    NoAccess,
    NotFound,
    Rejected,
    ValidationFailed,
)
from ledger.group_commit import LedgerClosed, Overloaded
from ledger.provenance import Provenance
from ledger.results import Result
from ledger.service import Ledger
from ledger.store import LockTimeout
from ledger.stream import (
    Backoff,
    EventBatch,
    EventRecord,
    ProvenanceFilter,
    read_batches,
    read_events,
)

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
