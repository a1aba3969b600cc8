"""Connections to the ledger's database, made from its URL exactly as given.

Every connection the ledger opens (the operator commands here, the write side's pool
in ``ledger.log.datastore``) goes through ``conninfo``: the URL is passed to libpq whole,
so its host or socket, user, ``sslmode``, ``application_name`` and every other
parameter apply, and what it leaves out comes from libpq's own defaults and
``PG*`` environment variables.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ledger.config import Settings
from ledger.errors import ConfigurationError

CONNECT_TIMEOUT_S = 10


def conninfo(url: str) -> str:
    """``url`` as given, with a connect timeout only where neither it nor
    ``PGCONNECT_TIMEOUT`` sets one (libpq would otherwise wait for ever)."""
    if "connect_timeout" in conninfo_to_dict(url) or os.environ.get("PGCONNECT_TIMEOUT"):
        return url
    return make_conninfo(url, connect_timeout=CONNECT_TIMEOUT_S)


def cannot_connect(error: psycopg.Error) -> ConfigurationError:
    """A failure to connect as one clear line (exit status 2)."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ConfigurationError(f"cannot connect to the database: {message}")


def connect(
    settings: Settings, *, autocommit: bool = False, **kwargs: Any
) -> psycopg.Connection[Any]:
    """A connection whose search_path is the ledger's schema.

    A failure to connect becomes a ``ConfigurationError``: one clear line, exit 2.
    """
    try:
        conn = psycopg.connect(conninfo(settings.url), autocommit=True, **kwargs)
    except psycopg.Error as error:
        raise cannot_connect(error) from None
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.schema)))
    conn.autocommit = autocommit
    return conn
