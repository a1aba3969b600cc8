"""The cluster's placing lock (``Placing``), apart from ``tests/citus_support.py`` so that
module stays under the project's 400 lines; ``citus_support`` names it as before."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg


def citus_version(url: str) -> str | None:
    """The Citus extension's version on the server at ``url``, or None without Citus."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'citus'").fetchone()
    return None if row is None else str(row[0])


# the cluster-wide lock of the schemas' placing and dropping (``Placing``): a bigint of our own
PLACING_LOCK = 2_028_000_028


class Placing:
    """One test process's hold on the coordinator's advisory lock ``PLACING_LOCK``, around
    whatever places, resets or drops a test's schema on a Citus cluster, so that xdist
    workers (``-n 2``) do it one at a time while the tests themselves run in parallel.

    Why: every schema's reference tables are one colocation group of the cluster, and two
    schemas placed or dropped at once deadlock on it (``create_reference_table`` in one
    against ``DROP SCHEMA ... CASCADE`` of another: ``deadlock detected``, docs/scaling.md
    "The suite on the cluster"). A session-level advisory lock on the coordinator is the
    cluster's: every such statement is sent through the coordinator. On a server without
    Citus the hold is nothing (no connection, no lock). The lock's connection is kept open
    between holds (autocommit, idle, holding nothing in between) and replaced when a test
    terminated it; a process that dies loses its hold with its session."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._on_citus: bool | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._depth = 0  # a hold inside a hold (a reset that drops) takes the lock once

    @contextmanager
    def held(self) -> Iterator[None]:
        if self._depth or not self._citus():
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        conn = self._connection()
        conn.execute("SELECT pg_advisory_lock(%s)", (PLACING_LOCK,))
        self._depth = 1
        try:
            yield
        finally:
            self._depth = 0
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)", (PLACING_LOCK,))
            except psycopg.Error:
                conn.close()  # its session is gone, and its hold with it

    @contextmanager
    def tried(self) -> Iterator[bool]:
        """The hold if it is free now (True), else nothing (False), never a wait: for the
        work that can as well be done later, under ``held`` (a schema pool's reset ahead of
        its next take, ``tests/schemas.py``). On a server without Citus: always True."""
        if self._depth or not self._citus():
            with self.held():
                yield True
            return
        conn = self._connection()
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (PLACING_LOCK,)).fetchone()
        if not (row and row[0]):
            yield False
            return
        self._depth = 1
        try:
            yield True
        finally:
            self._depth = 0
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)", (PLACING_LOCK,))
            except psycopg.Error:
                conn.close()

    @property
    def cluster_wide(self) -> bool:
        """Whether the hold is a real lock (a Citus coordinator), not nothing."""
        return self._citus()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _citus(self) -> bool:
        if self._on_citus is None:
            self._on_citus = citus_version(self.url) is not None
        return self._on_citus

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.execute("SELECT 1")
                return self._conn
            except psycopg.Error:
                self._conn.close()
        self._conn = psycopg.connect(self.url, autocommit=True)
        return self._conn


_PLACINGS: dict[str, Placing] = {}


def placing(url: str) -> Placing:
    """This process's one ``Placing`` of the server at ``url`` (shared by its schema pools and
    fixtures, so a hold inside another's is the same hold)."""
    if url not in _PLACINGS:
        _PLACINGS[url] = Placing(url)
    return _PLACINGS[url]
