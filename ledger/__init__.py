"""ledger: an event-sourced purchase and access ledger on PostgreSQL.

The typed API::

    import ledger
    settings = ledger.settings()                 # LEDGER_DATABASE_URL or the embedded server
    ledger.upgrade(settings)                     # migrations
    with ledger.open_ledger(settings) as app:    # the write side
        ledger.append(app, ledger.RegisterUser(user_id="u1"))
"""

from ledger.api import append, append_lines, open_ledger, parse_lines, settings, upgrade
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
from ledger.domain.errors import (
    Conflict,
    InvalidState,
    NoAccess,
    NotFound,
    Rejected,
    ValidationFailed,
)
from ledger.results import Result
from ledger.service import Ledger
from ledger.store import LockTimeout

__all__ = [
    "Command",
    "CompletePurchase",
    "ConfigurationError",
    "Conflict",
    "DeleteContent",
    "DeleteUser",
    "FailPurchase",
    "GrantAccess",
    "InvalidState",
    "Ledger",
    "LockTimeout",
    "NoAccess",
    "NotFound",
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
    "open_ledger",
    "parse_command",
    "parse_lines",
    "settings",
    "upgrade",
]
