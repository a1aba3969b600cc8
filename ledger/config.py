"""Where the ledger's database is: a URL, or the embedded server.

``LEDGER_DATABASE_URL`` (or ``--database-url``) names a PostgreSQL server; with
neither, an embedded server under ``LEDGER_HOME`` is started on demand and reused.
``LEDGER_SCHEMA`` picks the schema (default ``public``): tests give each test its
own.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from psycopg.conninfo import conninfo_to_dict

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")


class ConfigurationError(Exception):
    """A setting is wrong or the database cannot be reached (exit status 2)."""


@dataclass(frozen=True)
class Settings:
    url: str
    schema: str = "public"

    def __post_init__(self) -> None:
        if not _SCHEMA_NAME.match(self.schema):
            raise ConfigurationError(
                f"schema {self.schema!r}: use lower-case letters, digits and _ (at most 48)"
            )
        try:
            conninfo_to_dict(self.url)
        except Exception as error:
            raise ConfigurationError(f"database URL is not valid: {error}") from None


def resolve(database_url: str | None = None, schema: str | None = None) -> Settings:
    """Settings from explicit values, then the environment, then the embedded server."""
    url = database_url or os.environ.get("LEDGER_DATABASE_URL")
    if not url:
        from ledger import embedded

        url = embedded.url()
    return Settings(url=url, schema=schema or os.environ.get("LEDGER_SCHEMA") or "public")
