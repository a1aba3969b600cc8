"""The typed Python API, of which the CLI is a thin shell."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import psycopg
from eventsourcing.persistence import PersistenceError

from ledger import config
from ledger.commands.base import Command
from ledger.commands.parsing import parse_command, validate_command
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.database import distribution, migrations
from ledger.database.connections import connect
from ledger.domain.errors import Rejected
from ledger.domain.provenance import Provenance, line_id
from ledger.errors import ConfigurationError
from ledger.log import chains
from ledger.playback.decide import Heartbeat
from ledger.reading.cursor import Cursor
from ledger.service import Ledger
from ledger.service.group_commit import GroupFailed

if TYPE_CHECKING:
    from ledger.reading.stream import Stop


def settings(database_url: str | None = None, schema: str | None = None) -> Settings:
    """Settings from explicit values, then the environment, then the embedded server
    (started on demand under ``LEDGER_HOME``, and reused)."""
    return config.resolve(database_url, schema, server=_embedded_url)


def _embedded_url() -> str:
    from ledger.database import embedded

    return embedded.url()


def upgrade(settings: Settings, stream: TextIO | None = None) -> list[migrations.Migration]:
    """Applies the pending migrations, then fills every projected table marked stale
    (created over a non-empty log, now or by an upgrade that was killed) from the log,
    with progress on ``stream`` (default stderr). Returns the migrations applied."""
    from ledger.upkeep.rebuild import rebuild
    from projections import freshness

    with connect(settings) as conn:
        applied = migrations.upgrade(conn, settings.schema)
    with connect(settings, autocommit=True) as conn:
        stale = list(freshness.stale(conn, settings.schema))
    if stale:
        report = rebuild(settings, stale, stream)
        out = stream if stream is not None else sys.stderr
        out.write(
            f"upgrade: filled {', '.join(report.tables)} from {report.events} events of the log\n"
        )
    return applied


def open_ledger(settings: Settings, pool_size: int = 2) -> Ledger:
    """The write side, once the schema is in place and its projected tables reflect the
    log (else a ``ConfigurationError``)."""
    from projections import freshness

    with connect(settings, autocommit=True) as conn:
        states = migrations.status(conn, settings.schema)
        stale = freshness.stale(conn, settings.schema)
        distributed = distribution.is_distributed(conn, settings.schema)
        # groups per organization too where the log takes no global lock (docs/stream.md)
        by_chain = chains.order(conn, settings.schema) != "global"
    missing = [s.migration.label for s in states if s.applied_at is None]
    if missing:
        raise ConfigurationError(
            f"the database is not migrated (missing {', '.join(missing)}): run `ledger db upgrade`"
        )
    if stale:
        raise ConfigurationError(
            f"the projected tables {', '.join(stale)} do not reflect the log yet: "
            "run `ledger db upgrade` (it fills them) before appending"
        )
    try:
        return Ledger(settings, pool_size, per_organization=distributed or by_chain)
    except (PersistenceError, psycopg.Error) as error:
        raise ConfigurationError(f"cannot open the ledger: {error}") from None


def append(ledger: Ledger, command: Command) -> Result:
    """One command from Python: validated by the same rules as a JSON line.

    Any number of threads may call it at once on one opened ledger: their commands are
    group-committed (``ledger.service.group_commit``), each answered once its group's
    transaction commits, exactly as it would have been answered alone. Raises
    ``Overloaded`` when ``LEDGER_QUEUE_MAX`` callers are already waiting.
    """
    try:
        checked = validate_command(command)
    except Rejected as error:
        return Result("rejected", error=error)
    return ledger.groups.append(checked)


def append_parsed(
    ledger: Ledger, commands: Sequence[Command | Heartbeat]
) -> list[Result | BaseException]:
    """Commands that ``parse_command`` made (so already checked by every rule), appended
    as ``append`` appends them, in this order, by one caller: each one's ``Result``, or
    the error that stopped its group. For a front that gathers concurrent requests itself
    (the HTTP service's event loop), so one thread waits for all of them. Raises
    ``Overloaded`` when the queue has no room for them all (then nothing is queued). A
    heartbeat may be given identified already (``Heartbeat.of``, at the moment it arrived)."""
    return ledger.groups.append_all(commands)


def observe_groups(ledger: Ledger, callback: Callable[[int, float], None]) -> None:
    """``callback(size, seconds)`` after each group that ``append`` commits (metrics)."""
    ledger.groups.observe(callback)


def parse_lines(
    lines: Iterable[str | bytes],
    *,
    source: str | None = None,
    name: str | None = None,
    first: int = 1,
) -> Iterator[Command | Rejected]:
    """Commands (or their rejections). Given a ``source``, each command is stamped with
    it, and with its input's ``name`` and line number (counted from ``first``) as its
    correlation id if the input has a name."""
    for number, line in enumerate(lines, start=first):
        try:
            if source is None:
                yield parse_command(line)
            else:
                where = None if name is None else line_id(name, number)
                yield parse_command(line, source, where)
        except Rejected as error:
            yield error


_BOM = "\ufeff"


def without_bom(lines: Iterable[str | bytes]) -> Iterator[str | bytes]:
    """The lines, less a UTF-8 byte order mark at the start of the input (editors on
    Windows write one); a mark anywhere else is left for the parser to reject."""
    first = True
    for line in lines:
        if first:
            first = False
            if isinstance(line, bytes):
                line = line.removeprefix(_BOM.encode())
            else:
                line = line.removeprefix(_BOM)
        yield line


def append_lines(
    ledger: Ledger,
    lines: Iterable[str | bytes],
    *,
    atomic: bool = False,
    batch: int = 1,
    source: str = "api",
    name: str | None = None,
) -> Iterator[tuple[int, Result]]:
    """JSON Lines in, (line number, result) out; streaming unless ``atomic``.

    One result per non-blank line: blank lines get none but still count, so line
    numbers match the input. A byte order mark at the start of the input is ignored.
    ``batch``: up to that many lines share a transaction (group commit), each still
    decided alone and answered as it would be alone, once its transaction commits;
    the iterable is read ahead by up to ``batch`` lines.
    Each command comes from ``source``; given the input's ``name`` (a file name, ``-``
    for stdin), its events' correlation id is the name and the line (``orders.jsonl:42``).
    """
    Provenance(source)  # a bad source is refused before any line is read
    if batch > 1 and not atomic:
        groups = append_line_groups(ledger, _chunks(lines, batch), source=source, name=name)
        for group in groups:
            yield from group
        return
    lines = without_bom(lines)
    numbered = (
        [(n, line) for n, line in enumerate(lines, start=1) if line.strip()] if atomic else None
    )
    if numbered is not None:
        items = [
            next(parse_lines([line], source=source, name=name, first=n)) for n, line in numbered
        ]
        results = ledger.execute_batch(items, atomic=True)
        yield from ((n, r) for (n, _), r in zip(numbered, results, strict=True))
        return
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        item = next(parse_lines([line], source=source, name=name, first=number))
        result = (
            Result("rejected", error=item) if isinstance(item, Rejected) else ledger.execute(item)
        )
        yield number, result


def append_line_groups(
    ledger: Ledger,
    groups: Iterable[Sequence[str | bytes]],
    *,
    source: str = "api",
    name: str | None = None,
) -> Iterator[list[tuple[int, Result]]]:
    """Consecutive groups of JSON Lines in, each group's non-blank lines in one transaction
    (``Ledger.execute_group``); out, each group's (line number, result) pairs in input
    order, once it has committed (a group of blank lines only gives none). Line numbers
    run on across groups; a byte order mark at the start of the first group is ignored.
    ``source`` and ``name``: as for ``append_lines``."""
    Provenance(source)
    number = 0
    first = True
    for group in groups:
        if first and group:
            group = [*without_bom(group[:1]), *group[1:]]
            first = False
        numbered = []
        for line in group:
            number += 1
            if line.strip():
                numbered.append((number, line))
        if not numbered:
            continue
        items = [
            next(parse_lines([line], source=source, name=name, first=n)) for n, line in numbered
        ]
        try:
            results = ledger.execute_group(items)
        except GroupFailed as failed:  # committed alone up to a line that met an error
            yield [(n, r) for (n, _), r in zip(numbered, failed.answered, strict=False)]
            raise failed.error from None
        yield [(n, r) for (n, _), r in zip(numbered, results, strict=True)]


def _chunks(lines: Iterable[str | bytes], size: int) -> Iterator[list[str | bytes]]:
    """Groups of lines holding ``size`` non-blank lines each (the last one fewer)."""
    group: list[str | bytes] = []
    count = 0
    for line in lines:
        group.append(line)
        if line.strip():
            count += 1
            if count == size:
                yield group
                group, count = [], 0
    if group:
        yield group


def result_line(number: int, result: Result) -> dict[str, Any]:
    return result.as_dict(number)


# --- the playback store (issue 26) ---------------------------------------------------


def playback_status(settings: Settings) -> dict[str, Any]:
    """Heartbeats stored, partitions, oldest and newest record, horizon, retention."""
    from ledger.playback import compact

    compact.retention()  # a bad LEDGER_PLAYBACK_RETENTION is reported first
    with connect(settings, autocommit=True) as conn:
        _require_store(conn, settings.schema)
        return compact.status(conn, settings.schema)


def playback_compact(settings: Settings, before: datetime | None = None) -> Any:
    """Folds the heartbeats dated before ``before`` (default: now minus the retention;
    rounded down to a UTC day) into the base and drops their partitions, in one
    transaction. Returns a ``ledger.playback.compact.Compaction``."""
    from ledger.playback import compact

    horizon = before if before is not None else datetime.now(UTC) - compact.retention()
    with connect(settings) as conn:
        _require_store(conn, settings.schema)
        conn.execute(
            "SELECT set_config('lock_timeout', %s, true)", (f"{settings.lock_timeout_ms}ms",)
        )
        done = compact.compact(conn, settings.schema, horizon)
        conn.commit()
    return done


def playback_start(settings: Settings, after: int | Cursor = 0) -> int | Cursor:
    """Where ``playback_events`` starts, in the store's kind of position: a position on a
    single server, a cursor (a position per organization) on the distributed layout; a
    ``ValueError`` naming ``after`` for the other kind (a position past 0 is no order
    across organizations)."""
    from ledger.playback import stream

    with connect(settings, autocommit=True) as conn:
        _require_store(conn, settings.schema)
        return stream.start(conn, settings.schema, after)


def playback_events(
    settings: Settings,
    after: int | Cursor = 0,
    *,
    follow: bool = False,
    limit: int | None = None,
    stop: Stop | None = None,
) -> Generator[list[dict[str, Any]]]:
    """The store's records still retained after ``after`` (a position, or on the
    distributed layout a cursor: ``playback_start``), in batches."""
    from ledger.playback import stream

    with connect(settings, autocommit=True) as conn:
        _require_store(conn, settings.schema)
        yield from stream.follow(
            conn,
            settings.schema,
            stream.start(conn, settings.schema, after),
            keep_following=follow,
            limit=limit,
            stop=stop or threading.Event(),
        )


def _require_store(conn: psycopg.Connection[Any], schema: str) -> None:
    migrations.require_log(conn, schema)
    if not migrations.has_table(conn, schema, "playback_base"):
        raise ConfigurationError(
            "the database has no playback store yet (migration 0011): run `ledger db upgrade`"
        )
