"""Where the ledger's database is: a URL, or the embedded server.

``LEDGER_DATABASE_URL`` (or ``--database-url``) names a PostgreSQL server; with
neither, an embedded server under ``LEDGER_HOME`` is started on demand and reused
(``ledger.api.settings`` gives ``resolve`` that server: the settings stand beneath the
database package, so they never import it).
``LEDGER_SCHEMA`` picks the schema (default ``public``): tests give each test its
own. ``LEDGER_LOCK_TIMEOUT`` bounds how long an append waits for the log's lock
(default 5s): a writer that holds it longer makes the others fail with a clear error
rather than queue behind it for ever. ``LEDGER_POOL_TIMEOUT`` bounds how long an append waits
for a working connection of the write side's pool (default 10s): when the server is lost, each
try gives up after it.

Concurrent appends on one opened ledger are group-committed (``ledger.service.group_commit``),
within three bounds: ``LEDGER_GROUP_MAX`` commands and ``LEDGER_GROUP_MAX_BYTES`` bytes
of commands (their JSON) per transaction, and ``LEDGER_QUEUE_MAX`` callers waiting,
beyond which an append raises ``Overloaded`` at once rather than queue without end.
Heartbeats go to the playback store in lanes of their own (``LEDGER_PLAYBACK_LANES``,
default 1: group commits of heartbeats that run beside each other and beside the log's), and
a lane's callers in ``LEDGER_PLAYBACK_IN_FLIGHT`` parts (default 1) whose groups are in flight
at once (``ledger.service.in_flight``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from psycopg.conninfo import conninfo_to_dict

# ledger.config.ConfigurationError stays importable from here
from ledger.errors import ConfigurationError as ConfigurationError

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")
_DURATION = re.compile(r"^([0-9]{1,10})(ms|s|min|h)$")
_MILLISECONDS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
_MAX_MILLISECONDS = 2**31 - 1  # PostgreSQL's bound for lock_timeout
DEFAULT_LOCK_TIMEOUT = "5s"
DEFAULT_POOL_TIMEOUT = "10s"
DEFAULT_GROUP_MAX = 256
DEFAULT_GROUP_MAX_BYTES = 1_048_576
DEFAULT_QUEUE_MAX = 4096
DEFAULT_PLAYBACK_LANES = 1
DEFAULT_PLAYBACK_IN_FLIGHT = 1
_COUNT = re.compile(r"^[0-9]{1,10}$")
_MAX_COUNT = 2**31 - 1


@dataclass(frozen=True)
class Settings:
    url: str
    schema: str = "public"
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT
    group_max: int = DEFAULT_GROUP_MAX
    group_max_bytes: int = DEFAULT_GROUP_MAX_BYTES
    queue_max: int = DEFAULT_QUEUE_MAX
    playback_lanes: int = DEFAULT_PLAYBACK_LANES
    pool_timeout: str = DEFAULT_POOL_TIMEOUT
    playback_in_flight: int = DEFAULT_PLAYBACK_IN_FLIGHT

    def __post_init__(self) -> None:
        if not _SCHEMA_NAME.match(self.schema):
            raise ConfigurationError(
                f"schema {self.schema!r}: use lower-case letters, digits and _ (at most 48)"
            )
        try:
            conninfo_to_dict(self.url)
        except Exception as error:
            raise ConfigurationError(f"database URL is not valid: {error}") from None
        lock_timeout_ms(self.lock_timeout)
        pool_timeout_ms(self.pool_timeout)
        for name, value in (
            ("LEDGER_GROUP_MAX", self.group_max),
            ("LEDGER_GROUP_MAX_BYTES", self.group_max_bytes),
            ("LEDGER_QUEUE_MAX", self.queue_max),
            ("LEDGER_PLAYBACK_LANES", self.playback_lanes),
            ("LEDGER_PLAYBACK_IN_FLIGHT", self.playback_in_flight),
        ):
            count(name, str(value))

    @property
    def lock_timeout_ms(self) -> int:
        return lock_timeout_ms(self.lock_timeout)

    @property
    def pool_timeout_s(self) -> float:
        return pool_timeout_ms(self.pool_timeout) / 1000


def lock_timeout_ms(value: str) -> int:
    """``LEDGER_LOCK_TIMEOUT`` in milliseconds: a whole number with its unit, as 5s or 500ms.

    A bare number is refused rather than guessed (PostgreSQL would read milliseconds,
    a person often means seconds), and so are 0 (wait for ever) and anything above
    PostgreSQL's bound.
    """
    found = _DURATION.match(value.strip())
    milliseconds = int(found[1]) * _MILLISECONDS[found[2]] if found else 0
    if not 0 < milliseconds <= _MAX_MILLISECONDS:
        raise ConfigurationError(
            f"LEDGER_LOCK_TIMEOUT {value!r} is not a lock timeout: give a whole number above 0 "
            "with its unit, ms, s, min or h (e.g. 5s, 500ms), at most 596h"
        )
    return milliseconds


def pool_timeout_ms(value: str) -> int:
    """``LEDGER_POOL_TIMEOUT`` in milliseconds, written as ``LEDGER_LOCK_TIMEOUT`` is."""
    found = _DURATION.match(value.strip())
    milliseconds = int(found[1]) * _MILLISECONDS[found[2]] if found else 0
    if not 0 < milliseconds <= _MAX_MILLISECONDS:
        raise ConfigurationError(
            f"LEDGER_POOL_TIMEOUT {value!r} is not a timeout: give a whole number above 0 "
            "with its unit, ms, s, min or h (e.g. 10s, 500ms), at most 596h"
        )
    return milliseconds


def count(name: str, value: str) -> int:
    """A bound given as a whole number above 0 (``LEDGER_GROUP_MAX`` and its kin).

    0 is refused rather than read as "no bound" (the bounds are what keeps memory and
    the log's lock hold time finite), and so is anything that is not plain digits.
    """
    found = _COUNT.match(value.strip())
    number = int(found[0]) if found else 0
    if not 0 < number <= _MAX_COUNT:
        raise ConfigurationError(
            f"{name} {value!r} is not a bound: give a whole number above 0 (at most {_MAX_COUNT})"
        )
    return number


def _count_from_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    return count(name, value) if value else default


def resolve(
    database_url: str | None = None,
    schema: str | None = None,
    *,
    server: Callable[[], str] | None = None,
) -> Settings:
    """Settings from explicit values, then the environment, then ``server()``: the URL of
    a server started on demand (``ledger.api.settings`` passes the embedded one's)."""
    lock_timeout = os.environ.get("LEDGER_LOCK_TIMEOUT") or DEFAULT_LOCK_TIMEOUT
    lock_timeout_ms(lock_timeout)  # a wrong setting is reported before a server is started
    pool_timeout = os.environ.get("LEDGER_POOL_TIMEOUT") or DEFAULT_POOL_TIMEOUT
    pool_timeout_ms(pool_timeout)
    group_max = _count_from_env("LEDGER_GROUP_MAX", DEFAULT_GROUP_MAX)
    group_max_bytes = _count_from_env("LEDGER_GROUP_MAX_BYTES", DEFAULT_GROUP_MAX_BYTES)
    queue_max = _count_from_env("LEDGER_QUEUE_MAX", DEFAULT_QUEUE_MAX)
    playback_lanes = _count_from_env("LEDGER_PLAYBACK_LANES", DEFAULT_PLAYBACK_LANES)
    in_flight = _count_from_env("LEDGER_PLAYBACK_IN_FLIGHT", DEFAULT_PLAYBACK_IN_FLIGHT)
    url = database_url or os.environ.get("LEDGER_DATABASE_URL")
    if not url:
        if server is None:
            raise ConfigurationError("no database: set LEDGER_DATABASE_URL or give --database-url")
        url = server()
    return Settings(
        url=url,
        schema=schema or os.environ.get("LEDGER_SCHEMA") or "public",
        lock_timeout=lock_timeout,
        group_max=group_max,
        group_max_bytes=group_max_bytes,
        queue_max=queue_max,
        playback_lanes=playback_lanes,
        pool_timeout=pool_timeout,
        playback_in_flight=in_flight,
    )
