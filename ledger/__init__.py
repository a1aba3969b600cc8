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

import ast
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

# THE TABLE: each public name, once, with the module it lives in. mypy reads these
# imports for the names' types (``name as name`` marks a re-export); at run time they are
# never executed: ``_table`` reads them from this file for the lazy map and ``__all__``.
if TYPE_CHECKING:
    from ledger.api import append as append
    from ledger.api import append_lines as append_lines
    from ledger.api import observe_groups as observe_groups
    from ledger.api import open_ledger as open_ledger
    from ledger.api import parse_lines as parse_lines
    from ledger.api import settings as settings
    from ledger.api import upgrade as upgrade
    from ledger.commands.access import GrantAccess as GrantAccess
    from ledger.commands.access import RecordPlayback as RecordPlayback
    from ledger.commands.access import RevokeAccess as RevokeAccess
    from ledger.commands.base import Command as Command
    from ledger.commands.catalogue import DeleteContent as DeleteContent
    from ledger.commands.catalogue import DeleteUser as DeleteUser
    from ledger.commands.catalogue import EraseUser as EraseUser
    from ledger.commands.catalogue import PublishContent as PublishContent
    from ledger.commands.catalogue import RegisterOrganization as RegisterOrganization
    from ledger.commands.catalogue import RegisterUser as RegisterUser
    from ledger.commands.parsing import parse_command as parse_command
    from ledger.commands.purchases import CompletePurchase as CompletePurchase
    from ledger.commands.purchases import FailPurchase as FailPurchase
    from ledger.commands.purchases import RefundPurchase as RefundPurchase
    from ledger.commands.purchases import StartPurchase as StartPurchase
    from ledger.commands.results import Result as Result
    from ledger.config import Settings as Settings
    from ledger.domain.errors import Conflict as Conflict
    from ledger.domain.errors import InvalidState as InvalidState
    from ledger.domain.errors import NoAccess as NoAccess
    from ledger.domain.errors import NotFound as NotFound
    from ledger.domain.errors import Rejected as Rejected
    from ledger.domain.errors import ValidationFailed as ValidationFailed
    from ledger.domain.provenance import Provenance as Provenance
    from ledger.errors import ConfigurationError as ConfigurationError
    from ledger.log.recorder import LockTimeout as LockTimeout
    from ledger.reading.chains import ChainBatch as ChainBatch
    from ledger.reading.chains import read_chains as read_chains
    from ledger.reading.consumers import Consumer as Consumer
    from ledger.reading.consumers import ConsumerRun as ConsumerRun
    from ledger.reading.consumers import consumer_cursor as consumer_cursor
    from ledger.reading.consumers import consumer_position as consumer_position
    from ledger.reading.consumers import run_consumer as run_consumer
    from ledger.reading.cursor import Cursor as Cursor
    from ledger.reading.cursor import parse_cursor as parse_cursor
    from ledger.reading.stream import Backoff as Backoff
    from ledger.reading.stream import EventBatch as EventBatch
    from ledger.reading.stream import EventRecord as EventRecord
    from ledger.reading.stream import ProvenanceFilter as ProvenanceFilter
    from ledger.reading.stream import read_batches as read_batches
    from ledger.reading.stream import read_events as read_events
    from ledger.service import Ledger as Ledger
    from ledger.service.group_commit import LedgerClosed as LedgerClosed
    from ledger.service.group_commit import Overloaded as Overloaded


def _table() -> dict[str, str]:
    """Name -> module, from the imports under ``TYPE_CHECKING`` above."""
    for node in ast.parse(Path(__file__).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            return {
                alias.name: str(imported.module)
                for imported in node.body
                if isinstance(imported, ast.ImportFrom)
                for alias in imported.names
            }
    raise ImportError("ledger/__init__.py has lost its table of public names")


_HOME = _table()
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
