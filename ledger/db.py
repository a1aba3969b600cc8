"""Plain connections for the operator commands (migrations, rebuild, audit)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ledger.config import ConfigurationError, Settings


def connect(
    settings: Settings, *, autocommit: bool = False, **kwargs: Any
) -> psycopg.Connection[Any]:
    """A connection whose search_path is the ledger's schema.

    A failure to connect becomes a ``ConfigurationError``: one clear line, exit 2.
    """
    try:
        conn = psycopg.connect(settings.url, autocommit=True, connect_timeout=10, **kwargs)
    except psycopg.Error as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigurationError(f"cannot connect to the database: {message}") from None
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.schema)))
    conn.autocommit = autocommit
    return conn
