"""What the design must do at least, measured raw: the references of issue 16.

* single-row INSERT + COMMIT of a row the size of an event, from 1 or N threads;
* the SQL that real appends sent, captured from the ledger's connections and replayed
  raw (same statements, same values, same pipelines, one writer);
* COPY of the events out of the log plus COPY of the final rows into tables with the
  same indexes and constraints (the rebuild's reference).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psutil
import psycopg
from psycopg import pq, sql

from benchmarks.cpu import cpu_seconds, used_between
from ledger.config import Settings
from projections.registry import TABLES


def event_row_size(settings: Settings) -> int:
    """Mean bytes of a stored event (ids, version, topic, state) in ``settings``' log."""
    with psycopg.connect(settings.url, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT coalesce(avg(24 + octet_length(topic) + octet_length(state)), 400) FROM {}"
            ).format(sql.Identifier(settings.schema, "ledger_events"))
        ).fetchone()
    return int(row[0]) if row else 400


class Meter:
    """CPU seconds spent during a run: by this process (every thread) and by the server
    backends serving this process's TCP connections (found by their client ports in
    ``pg_stat_activity``, read from ``/proc``; none over a Unix socket). Tells where a
    run's time goes on a machine whose cores both work."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = 0.0
        self.server: float | None = None
        self._before: dict[int, float] = {}
        self._started = 0.0

    def _backends(self) -> dict[int, float]:
        ports = [
            c.laddr.port
            for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.status == psutil.CONN_ESTABLISHED
        ]
        if not ports:
            return {}
        with psycopg.connect(self.url, autocommit=True) as conn:
            pids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s)", (ports,)
                ).fetchall()
            ]
        return cpu_seconds(pids)

    def start(self) -> None:
        self._before = self._backends()
        self._started = time.process_time()

    def stop(self) -> None:
        self.client = time.process_time() - self._started
        after = self._backends()
        if after:
            self.server = used_between(self._before, after)

    def per(self, count: int) -> dict[str, float | None]:
        """Milliseconds of CPU per operation, client and server."""
        return {
            "client_cpu_ms": self.client * 1000 / count,
            "server_cpu_ms": None if self.server is None else self.server * 1000 / count,
        }


def in_threads(work: Callable[[int], None], threads: int, meter: Meter | None = None) -> float:
    """Seconds from the moment ``threads`` threads are released together until the last
    one finishes ``work(index)``: whatever the caller prepared before (connections,
    commands) is not counted."""
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            work(index)
        except BaseException as error:
            errors.append(error)
            raise

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    if meter is not None:
        meter.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    if meter is not None:
        meter.stop()
    if errors:
        raise errors[0]
    return elapsed


def row_table(url: str, schema: str, name: str) -> sql.Composed:
    """Creates the table ``name`` (a key and a text body) and returns the INSERT of a body."""
    table = sql.Identifier(schema, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, body text)").format(
                table
            )
        )
    return sql.SQL("INSERT INTO {} (body) VALUES (%s)").format(table)


def raw_inserts(
    url: str, schema: str, count: int, payload: int, threads: int, meter: Meter | None = None
) -> float:
    """Rows per second of single-row INSERT + COMMIT (autocommit, prepared), ``count``
    rows of ``payload`` bytes in all, from ``threads`` threads each on its own
    connection (connecting is not counted)."""
    statement = row_table(url, schema, "raw_rows")
    body = "x" * payload
    per_thread = count // threads
    connections = [psycopg.connect(url, autocommit=True) for _ in range(threads)]
    try:
        text = statement.as_bytes(connections[0])

        def work(index: int) -> None:
            conn = connections[index]
            for _ in range(per_thread):
                conn.execute(text, (body,), prepare=True)

        seconds = in_threads(work, threads, meter)
    finally:
        for conn in connections:
            conn.close()
    return per_thread * threads / seconds


# --- captured appends, replayed raw ---------------------------------------------------


@dataclass(frozen=True)
class Statement:
    query: Any
    params: Any
    prepare: bool | None
    pipelined: bool


@dataclass
class Capture:
    """Every statement the ledger's connections execute while ``recording``, grouped
    by the call that sent them (``mark`` closes a group)."""

    groups: list[list[Statement]] = field(default_factory=list)
    current: list[Statement] = field(default_factory=list)

    def mark(self) -> None:
        self.groups.append(self.current)
        self.current = []


@contextmanager
def recording(capture: Capture) -> Iterator[Capture]:
    """Wraps ``psycopg.Cursor.execute`` for the duration: one thread only."""
    original = psycopg.Cursor.execute

    def execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        pipelined = self.connection.pgconn.pipeline_status != pq.PipelineStatus.OFF
        text = query.as_bytes(self.connection) if isinstance(query, sql.Composable) else query
        capture.current.append(Statement(text, _copied(params), kwargs.get("prepare"), pipelined))
        return original(self, query, params, **kwargs)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign]
    try:
        yield capture
    finally:
        psycopg.Cursor.execute = original  # type: ignore[method-assign]


def _copied(params: Any) -> Any:
    return list(params) if isinstance(params, list) else params


def retarget(statements: Sequence[Statement], old: str, new: str) -> list[Statement]:
    """The statements with schema ``old`` replaced by ``new`` in their text (the names are
    random and long enough that nothing else matches)."""

    def moved(query: Any) -> Any:
        if isinstance(query, bytes):
            return query.replace(old.encode(), new.encode())
        if isinstance(query, str):
            return query.replace(old, new)
        raise TypeError(f"cannot retarget a {type(query).__name__} statement")

    return [Statement(moved(s.query), s.params, s.prepare, s.pipelined) for s in statements]


def replay(conn: psycopg.Connection[Any], statements: Sequence[Statement]) -> None:
    """Sends the statements as the ledger did: runs of pipelined ones in one pipeline."""
    cursor = conn.cursor()
    index = 0
    while index < len(statements):
        if not statements[index].pipelined:
            s = statements[index]
            cursor.execute(s.query, s.params, prepare=s.prepare)
            index += 1
            continue
        with conn.pipeline():
            while index < len(statements) and statements[index].pipelined:
                s = statements[index]
                cursor.execute(s.query, s.params, prepare=s.prepare)
                index += 1


# --- the rebuild's reference ----------------------------------------------------------


def copy_out_and_in(settings: Settings) -> tuple[float, float]:
    """(seconds to COPY the log's events out, seconds to COPY the projected tables' final
    rows into fresh tables with the same indexes and constraints), in one transaction
    each, the client receiving and sending every byte."""
    from ledger.database import migrations

    target = settings.schema + "_copyref"
    with psycopg.connect(settings.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(target)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(target)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(target)))
        for migration in migrations.projection_migrations():
            conn.execute(migration.up.encode())
        started = time.perf_counter()
        received = 0
        with (
            conn.transaction(),
            conn.cursor().copy(
                sql.SQL("COPY {} (notification_id, topic, state) TO STDOUT").format(
                    sql.Identifier(settings.schema, "ledger_events")
                )
            ) as copy,
        ):
            for chunk in copy:
                received += len(chunk)
        out_seconds = time.perf_counter() - started
        dumps = {}
        for table in TABLES:
            buffer = bytearray()
            with conn.cursor().copy(
                sql.SQL("COPY {} TO STDOUT").format(sql.Identifier(settings.schema, table))
            ) as copy:
                for chunk in copy:
                    buffer += chunk
            dumps[table] = bytes(buffer)
        started = time.perf_counter()
        with conn.transaction():
            for table, data in dumps.items():
                with conn.cursor().copy(
                    sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(target, table))
                ) as copy:
                    copy.write(data)
        in_seconds = time.perf_counter() - started
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(target)))
    assert received > 0
    return out_seconds, in_seconds
