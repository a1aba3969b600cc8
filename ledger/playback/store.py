"""The playback store on PostgreSQL: a group of heartbeats decided and written set-based.

One statement reads what every heartbeat of the group needs (the user, the content, the
access row at its time, the compacted horizon, whether it is stored already, its
idempotency key), the group bound once as one JSON parameter and each fact a one-row index
probe; ``decide`` gives the answers; then one statement writes the accepted ones (keys,
records, the ``video_playback`` rows by a guarded upsert, ``content_access.last_accessed_at``)
in one transaction. Never the
log's lock: a heartbeat commits while another connection holds ``ledger_events`` locked.

Ordering without the global lock: the upsert keeps the newest ``occurred_at`` on the row
(``completed`` only ever turns true), so two processes racing on one (user, content) leave
the newest whichever commits last. Positions (the stream's order) are drawn under a
transaction-level advisory lock held to the commit, so they commit in order and a reader
following the stream never skips one (what ``ledger_events``' lock does for the log, here
only among heartbeat writers). A lost race (the same heartbeat or key committed meanwhile
by another process, a user deleted meanwhile) rolls the group back and decides it again.
The transaction takes two round trips (pipeline mode): the facts, then every write and the
commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from ledger.commands.access import RecordPlayback
from ledger.commands.results import Result
from ledger.domain import clock, ids
from ledger.playback import partitions
from ledger.playback.decide import Facts, Heartbeat, decide, newest

ATTEMPTS = 5
ADVISORY_LOCK = 0x1ED6E726  # the stream's order: one heartbeat writer draws at a time

Explain = Callable[[str, str], str]
"""``explain(kind, id)``: why a user or content without a row is not live (the log knows)."""
LogKey = Callable[[str], tuple[str, str] | None]
"""``log_key(key)``: the fingerprint and command type of a key the money log holds."""
Legacy = Callable[[str, str], frozenset[str]]
"""``legacy(user, content)``: the identities of the heartbeats the log recorded for the pair
before the store (its ``Playback`` aggregate): sent again, they are ``duplicate``."""


@dataclass
class _Lookups:
    """What the log said, asked once per group: why a user or content is not live, and
    the fingerprint and type of a key the log holds (``None``: none)."""

    why: dict[tuple[str, str], str] = field(default_factory=dict)
    keys: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    legacy: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)


class _Missing(Exception):
    """The group needs the log's answers, or partitions, first: asked with no connection
    held, then the group is decided again."""

    def __init__(self, days: set[date] | None = None) -> None:
        super().__init__("lookups or partitions needed")
        self.days = days or set()
        self.why: set[tuple[str, str]] = set()
        self.keys: set[str] = set()
        self.legacy: set[tuple[str, str]] = set()


def _json(rows: list[dict[str, Any]]) -> str:
    """A group's rows as one ``json`` parameter (``json_to_recordset`` in the statement):
    orjson writes UUIDs and aware datetimes as PostgreSQL reads them back."""
    return orjson.dumps(rows).decode()


@lru_cache(maxsize=16)
def _statements(schema: str) -> dict[str, bytes]:
    """Rendered once per schema: psycopg renders a ``Composed`` again at every execute."""

    def t(name: str) -> sql.Identifier:
        return sql.Identifier(schema, name)

    statements = {
        # each lookup a LATERAL probe of one row (LIMIT 1): an index probe per heartbeat
        # whatever the tables' statistics, where an EXISTS may be planned as a hash of the
        # whole table (the day's partition, the log) built for every group
        "facts": sql.SQL(
            "SELECT i.n, u.live IS NOT NULL AS user_live, c.organization_id, "
            "a.created_at AS access_since, a.expires_at AS access_expires, b.horizon, "
            "h.seen IS NOT NULL AS seen, k.fingerprint AS key_fingerprint, "
            "(k.fingerprint IS NULL AND ek.found IS NOT NULL) AS log_key, "
            "el.found IS NOT NULL AS legacy "
            "FROM json_to_recordset(%s::json) AS i(n int, user_id text, content_id uuid, "
            "occurred_at timestamptz, identity text, key text, key_id uuid, playback_id uuid) "
            "LEFT JOIN LATERAL (SELECT true AS live FROM {users} u WHERE u.id = i.user_id "
            "LIMIT 1) u ON true "
            "LEFT JOIN LATERAL (SELECT c.organization_id FROM {content} c "
            "WHERE c.id = i.content_id LIMIT 1) c ON true "
            "LEFT JOIN LATERAL (SELECT a.created_at, a.expires_at FROM {access} a "
            "WHERE a.user_id = i.user_id AND a.content_id = i.content_id LIMIT 1) a ON true "
            "LEFT JOIN LATERAL (SELECT b.horizon FROM {base} b WHERE b.user_id = i.user_id "
            "AND b.content_id = i.content_id LIMIT 1) b ON true "
            "LEFT JOIN LATERAL (SELECT true AS seen FROM {hb} h WHERE h.identity = i.identity "
            "AND h.occurred_at = i.occurred_at LIMIT 1) h ON true "
            "LEFT JOIN LATERAL (SELECT k.fingerprint FROM {keys} k "
            "WHERE k.idempotency_key = i.key LIMIT 1) k ON true "
            "LEFT JOIN LATERAL (SELECT true AS found FROM {events} e "
            "WHERE e.originator_id = i.key_id LIMIT 1) ek ON true "
            "LEFT JOIN LATERAL (SELECT true AS found FROM {events} e "
            "WHERE e.originator_id = i.playback_id LIMIT 1) el ON true "
            "CROSS JOIN (SELECT pg_advisory_xact_lock(%s)) AS stream_order ORDER BY i.n"
        ).format(
            hb=t("playback_heartbeats"),
            events=t("ledger_events"),
            users=t("users"),
            content=t("content"),
            access=t("content_access"),
            base=t("playback_base"),
            keys=t("playback_keys"),
        ),
        # every write of a group in one statement (data-modifying CTEs, each on its own
        # table): the keys, the records (their positions drawn under the advisory lock the
        # facts statement took), the video_playback rows, the access rows
        "write": sql.SQL(
            "WITH keys AS (INSERT INTO {keys} (idempotency_key, fingerprint) "
            "SELECT k, f FROM json_to_recordset(%(keys)s::json) AS i(k text, f text)), "
            "records AS (INSERT INTO {hb} (identity, occurred_at, user_id, content_id, "
            "organization_id, position_seconds, duration_seconds, completed, idempotency_key) "
            "SELECT * FROM json_to_recordset(%(records)s::json) AS i(identity text, "
            "occurred_at timestamptz, user_id text, content_id uuid, organization_id uuid, "
            "p int, d int, c bool, key text) RETURNING identity, occurred_at, position), "
            "rows AS MATERIALIZED (SELECT * FROM json_to_recordset(%(rows)s::json) AS i(id uuid, "
            "user_id text, content_id uuid, p int, d int, done bool, at timestamptz, "
            "first timestamptz)), "
            "shown AS (INSERT INTO {vp} AS v (id, user_id, content_id, position_seconds, "
            "duration_seconds, completed, updated_at, created_at) "
            "SELECT * FROM rows "
            "ON CONFLICT (user_id, content_id) DO UPDATE SET "
            "position_seconds = CASE WHEN EXCLUDED.updated_at >= v.updated_at "
            "THEN EXCLUDED.position_seconds ELSE v.position_seconds END, "
            "duration_seconds = CASE WHEN EXCLUDED.updated_at >= v.updated_at "
            "THEN EXCLUDED.duration_seconds ELSE v.duration_seconds END, "
            "completed = v.completed OR EXCLUDED.completed, "
            "updated_at = GREATEST(v.updated_at, EXCLUDED.updated_at)), "
            "stamped AS (UPDATE {access} a "
            "SET last_accessed_at = GREATEST(a.last_accessed_at, i.at), "
            "updated_at = GREATEST(a.updated_at, i.at) "
            "FROM rows i "
            "WHERE a.user_id = i.user_id AND a.content_id = i.content_id) "
            "SELECT identity, occurred_at, position FROM records"
        ).format(
            keys=t("playback_keys"),
            hb=t("playback_heartbeats"),
            vp=t("video_playback"),
            access=t("content_access"),
        ),
    }
    return {name: statement.as_bytes() for name, statement in statements.items()}


class PlaybackStore:
    """Heartbeats on PostgreSQL, through the write side's pool."""

    def __init__(
        self,
        pool: ConnectionPool[Any],
        schema: str,
        explain: Explain,
        log_key: LogKey,
        legacy: Legacy,
    ) -> None:
        self._legacy = legacy
        self._pool = pool
        self._schema = schema
        self._explain = explain
        self._log_key = log_key
        self._days: set[date] = set()

    def record(self, commands: Sequence[RecordPlayback]) -> list[Result]:
        """Each heartbeat's answer, all of the accepted ones committed in one transaction."""
        now = clock.now()
        heartbeats = [Heartbeat.of(c, now) for c in commands]
        lookups = _Lookups()
        for attempt in range(ATTEMPTS):
            try:
                return self._attempt(heartbeats, lookups)
            except _Missing as missing:
                # asked with no connection held: the log's reads use the same pool
                self._look_up(missing, lookups)
                if missing.days:
                    self._create(missing.days)
            except (psycopg.errors.UniqueViolation, psycopg.errors.ForeignKeyViolation):
                if attempt == ATTEMPTS - 1:
                    raise  # raced ATTEMPTS times: the caller's error
            except psycopg.errors.CheckViolation:
                self._days.clear()  # a partition was dropped meanwhile (compaction)
                if attempt == ATTEMPTS - 1:
                    raise
        raise RuntimeError(f"gave up after {ATTEMPTS} attempts")

    def check(self, commands: Sequence[RecordPlayback]) -> list[Result | None]:
        """What each heartbeat would get now (``None``: accepted), writing nothing: an
        ``--atomic`` batch's heartbeats are checked before its money commands commit."""
        now = clock.now()
        heartbeats = [Heartbeat.of(c, now) for c in commands]
        lookups = _Lookups()
        for _ in range(2):
            try:
                with self._pool.connection() as conn, conn.transaction():
                    rows = self._read(conn, heartbeats)
                    facts = self._facts(heartbeats, rows, lookups)
                return decide(heartbeats, facts).results
            except _Missing as missing:
                self._look_up(missing, lookups)
        raise RuntimeError("the log's answers about users, content or keys kept changing")

    def _attempt(self, heartbeats: list[Heartbeat], lookups: _Lookups) -> list[Result]:
        """One transaction in two round trips (pipeline mode): the facts, then the writes
        and the commit. A lost race raises (the transaction is rolled back)."""
        sql_ = _statements(self._schema)
        with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            facts = self._facts(heartbeats, self._read(conn, heartbeats), lookups)
            decided = decide(heartbeats, facts)
            if not decided.accepted:
                return [r for r in decided.results if r is not None]
            days = {partitions.day(h.occurred_at) for h, _ in decided.accepted} - self._days
            if days:
                raise _Missing(days=days)
            records = self._write(conn, sql_, decided.accepted)
        positions = {(r["identity"], r["occurred_at"]): r["position"] for r in records.fetchall()}
        answers: list[Result] = []
        accepted = iter(decided.accepted)
        for result in decided.results:
            if result is None:
                h, _ = next(accepted)
                result = Result("accepted", position=positions[(h.identity, h.occurred_at)])
            answers.append(result)
        return answers

    def _read(self, conn: psycopg.Connection[Any], heartbeats: list[Heartbeat]) -> list[Any]:
        """The group's facts, its heartbeats bound as one JSON parameter: psycopg dumps
        a list parameter element by element in Python, which cost more of the serial
        section than the statement itself (docs/performance.md)."""
        group = [
            {
                "n": n,
                "user_id": h.user_id,
                "content_id": h.content_id,
                "occurred_at": h.occurred_at,
                "identity": h.identity,
                "key": h.key,
                "key_id": ids.command_key_id("idempotency_key", h.key) if h.key else None,
                "playback_id": ids.playback_id(h.user_id, h.content_id),
            }
            for n, h in enumerate(heartbeats)
        ]
        return conn.execute(
            _statements(self._schema)["facts"],
            (_json(group), ADVISORY_LOCK),
            prepare=True,
        ).fetchall()

    def _facts(
        self, heartbeats: list[Heartbeat], rows: list[Any], lookups: _Lookups
    ) -> list[Facts]:
        """The facts of each heartbeat; ``_Missing`` when the log must be asked first
        (why a user or content is not live, a key only the log holds)."""
        facts: list[Facts] = []
        missing = _Missing()
        for h, row in zip(heartbeats, rows, strict=True):
            org = row["organization_id"]
            fact = Facts(
                user=None,
                content=None,
                organization_id=str(org) if org is not None else None,
                access_since=row["access_since"],
                access_expires=row["access_expires"],
                horizon=row["horizon"],
                seen=row["seen"],
                key_fingerprint=row["key_fingerprint"],
            )
            if not row["user_live"]:
                fact.user = lookups.why.get(("user", h.user_id))
                if fact.user is None:
                    missing.why.add(("user", h.user_id))
            if org is None:
                fact.content = lookups.why.get(("content", h.content_id))
                if fact.content is None:
                    missing.why.add(("content", h.content_id))
            if row["legacy"]:  # heartbeats of this pair recorded in the log, before the store
                pair = (h.user_id, h.content_id)
                if pair not in lookups.legacy:
                    missing.legacy.add(pair)
                else:
                    fact.seen = fact.seen or h.identity in lookups.legacy[pair]
            if row["log_key"] and h.key is not None:
                if h.key not in lookups.keys:
                    missing.keys.add(h.key)
                elif (used := lookups.keys[h.key]) is not None:
                    fact.key_fingerprint, fact.key_type = used
            facts.append(fact)
        if missing.why or missing.keys or missing.legacy:
            raise missing
        return facts

    def _look_up(self, missing: _Missing, lookups: _Lookups) -> None:
        for kind, entity in missing.why:
            lookups.why[(kind, entity)] = self._explain(kind, entity)
        for key in missing.keys:
            lookups.keys[key] = self._log_key(key)
        for pair in missing.legacy:
            lookups.legacy[pair] = self._legacy(*pair)

    def _create(self, days: set[date]) -> None:
        """Creates the days' partitions, in a short transaction of their own."""
        with self._pool.connection() as conn:
            self._days |= set(partitions.existing(conn, self._schema))
            conn.commit()
            if days - self._days:
                partitions.create(conn, self._schema, days - self._days)
                conn.commit()
            self._days |= days

    def _write(
        self,
        conn: psycopg.Connection[Any],
        sql_: dict[str, bytes],
        accepted: list[tuple[Heartbeat, str]],
    ) -> psycopg.Cursor[Any]:
        """Queues the group's one write statement (pipeline mode); returns its cursor, the
        records' positions, read once the transaction has committed. The same heartbeat or
        key committed meanwhile by another writer is a ``UniqueViolation``."""
        shown = sorted(newest([h for h, _ in accepted]).items())
        records = conn.cursor()
        records.execute(
            sql_["write"],
            {
                "keys": _json(
                    [{"k": h.key, "f": h.fingerprint} for h, _ in accepted if h.key is not None]
                ),
                "records": _json(
                    [
                        {
                            "identity": h.identity,
                            "occurred_at": h.occurred_at,
                            "user_id": h.user_id,
                            "content_id": h.content_id,
                            "organization_id": org,
                            "p": h.command.position_seconds,
                            "d": h.command.duration_seconds,
                            "c": h.completed,
                            "key": h.key,
                        }
                        for h, org in accepted
                    ]
                ),
                "rows": _json(
                    [
                        {
                            "id": ids.playback_id(u, c),
                            "user_id": u,
                            "content_id": c,
                            "p": r.heartbeat.command.position_seconds,
                            "d": r.heartbeat.command.duration_seconds,
                            "done": r.completed,
                            "at": r.heartbeat.occurred_at,
                            "first": r.first,
                        }
                        for (u, c), r in shown
                    ]
                ),
            },
            prepare=True,
        )
        return records
