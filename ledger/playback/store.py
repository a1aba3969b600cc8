"""The playback store on PostgreSQL: a group of heartbeats decided and written in one
statement (``ledger.playback.statements``).

The statement reads what every heartbeat of the group needs (the user, the content, the
access row at its time, the compacted horizon, whether it is stored already, its idempotency
key), the group bound once as one JSON parameter and each fact a one-row index probe;
decides each heartbeat by the rules of ``decide`` (the specification, which the ``--atomic``
check and the memory store run in Python); writes the accepted ones (keys, records, the
``video_playback`` rows by a guarded upsert, ``content_access.last_accessed_at``) and
returns every answer. Never the log's lock: a heartbeat commits while another connection
holds ``ledger_events`` locked.

Ordering without the global lock: the upsert keeps the newest ``occurred_at`` on the row
(``completed`` only ever turns true), so two processes racing on one (user, content) leave
the newest whichever commits last. Groups overlap (migration 0029): two lanes' groups are
decided, written and committed at once, so positions (the stream's order) may commit out of
their order; each group publishes, before it draws them, a lower bound of its positions in
an advisory lock held to its commit, and the stream's reader stops below every group still
in flight (``ledger.playback.stream``: it never skips a committed record). The writers hold
``ADVISORY_LOCK`` shared to the commit, so an erasure, which takes it exclusively, still
sees every group committed before it. On Citus each organization's own positions and lock
instead, ``ledger.playback.distributed``. A lost race (the same heartbeat or key committed
meanwhile by another group, a user deleted meanwhile, a deadlock with another process's
group on the same rows) rolls the group back and decides it again. The call is one statement
in autocommit: the lock, the decision, the writes and the commit in one round trip; a group
whose heartbeats share no identity and no key (8 viewers' heartbeats: every group) is
flagged so, and decided without the walk in order (migration 0025). What only the money log
knows (why a user or content is not live, a key or heartbeats it recorded before the store)
is asked when the statement answers ``lookup``, with no connection held, and the group is
decided again with the answers bound in."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Sequence
from datetime import date
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from ledger.commands.access import RecordPlayback
from ledger.commands.results import DUPLICATE, Result
from ledger.database import store_placement
from ledger.domain import clock, ids
from ledger.domain.access import check_playable
from ledger.domain.errors import Rejected
from ledger.playback import distributed, partitions
from ledger.playback.decide import (
    Facts,
    Heartbeat,
    before_horizon,
    decide,
    key_conflict,
    not_found,
)
from ledger.playback.group import GroupEncoder, Lookups, dumps
from ledger.playback.statements import rendered

ATTEMPTS = 5
ADVISORY_LOCK = 0x1ED6E726  # the high half of every schema's key (``stream_lock``)


def stream_lock(schema: str) -> int:
    """The advisory key heartbeat writers of ``schema``'s store hold shared, and an erasure
    of that schema exclusively: one a schema. One key for the whole database made an erasure
    in one schema wait for groups in flight in every other, and a writer queued behind that
    erasure wait with it (seen as a hang of three test processes whose schemas shared the
    key, each waiting on another's open transaction through its client)."""
    return (ADVISORY_LOCK << 32) | zlib.crc32(schema.encode())


Explain = Callable[[str, str], str]
"""``explain(kind, id)``: why a user or content without a row is not live (the log knows)."""
LogKey = Callable[[str], tuple[str, str] | None]
"""``log_key(key)``: the fingerprint and command type of a key the money log holds."""
Legacy = Callable[[str, str], frozenset[str]]
"""``legacy(user, content)``: the identities of the heartbeats the log recorded for the pair
before the store (its ``Playback`` aggregate): sent again, they are ``duplicate``."""


class _Missing(Exception):
    """The group needs the log's answers, or partitions, first: asked with no connection
    held, then the group is decided again."""

    def __init__(self, days: set[date] | None = None) -> None:
        super().__init__("lookups or partitions needed")
        self.days = days or set()
        self.why: set[tuple[str, str]] = set()
        self.keys: set[str] = set()
        self.legacy: set[tuple[str, str]] = set()


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
        self._group = GroupEncoder(schema)  # the group's JSON, its days' partitions named
        self._distributed: bool | None = None  # the store on Citus: read once

    def record(self, commands: Sequence[RecordPlayback | Heartbeat]) -> list[Result]:
        """Each heartbeat's answer, all of the accepted ones committed in one transaction."""
        now = clock.now()
        heartbeats = Heartbeat.each(commands, now)
        lookups = Lookups()
        for attempt in range(ATTEMPTS):
            try:
                if self._is_distributed():
                    return self._attempt_distributed(heartbeats, lookups)
                return self._attempt(heartbeats, lookups)
            except _Missing as missing:
                # asked with no connection held: the log's reads use the same pool
                self._look_up(missing, lookups)
                if missing.days:
                    self._create(missing.days)
            except (
                psycopg.errors.UniqueViolation,
                psycopg.errors.ForeignKeyViolation,
                psycopg.errors.DeadlockDetected,
            ):
                if attempt == ATTEMPTS - 1:
                    raise  # raced ATTEMPTS times: the caller's error
            except psycopg.errors.CheckViolation:
                # a partition dropped between the statement's check and its insert
                # (compaction): the next attempt finds it missing and creates it
                if attempt == ATTEMPTS - 1:
                    raise
        raise RuntimeError(f"gave up after {ATTEMPTS} attempts")

    def check(self, commands: Sequence[RecordPlayback]) -> list[Result | None]:
        """What each heartbeat would get now (``None``: accepted), writing nothing: an
        ``--atomic`` batch's heartbeats are checked before its money commands commit."""
        now = clock.now()
        heartbeats = [Heartbeat.of(c, now) for c in commands]
        lookups = Lookups()
        for _ in range(2):
            try:
                with self._pool.connection() as conn, conn.transaction():
                    if self._is_distributed():
                        rows = distributed.facts(conn, self._schema, heartbeats)
                    else:
                        rows = self._read(conn, heartbeats)
                    facts = self._facts(heartbeats, rows, lookups)
                return decide(heartbeats, facts).results
            except _Missing as missing:
                self._look_up(missing, lookups)
        raise RuntimeError("the log's answers about users, content or keys kept changing")

    def keys_of(self, keys: Collection[str]) -> dict[str, str]:
        """The heartbeats' keys among ``keys`` (key to fingerprint), in one query: a money
        command with one is a ``conflict`` (``ledger.service.command_keys``)."""
        with self._pool.connection() as conn:
            rows = conn.execute(rendered(self._schema)["keys_of"], (list(keys),)).fetchall()
        return {r["idempotency_key"]: r["fingerprint"] for r in rows}

    def _attempt(self, heartbeats: list[Heartbeat], lookups: Lookups) -> list[Result]:
        """One call of ``playback_record`` in a transaction of its own (autocommit): the
        stream's lock, the group's decision and writes, the commit, in one round trip. A
        lost race raises (the transaction is rolled back); a group that needs the log's
        answers or a partition wrote nothing and raises ``_Missing``."""
        statements = rendered(self._schema)
        group = self._group.encode(heartbeats, lookups)
        with self._pool.connection() as conn:
            # one statement in its own transaction: no BEGIN, no COMMIT to send
            conn.autocommit = True
            try:
                rows = conn.execute(
                    statements["record"], (group, stream_lock(self._schema)), prepare=True
                ).fetchall()
            finally:
                conn.autocommit = False
        missing = self._missing(heartbeats, rows, lookups)
        if missing is not None:
            raise missing
        return [self._answer(h, row, lookups) for h, row in zip(heartbeats, rows, strict=True)]

    def _is_distributed(self) -> bool:
        """Whether the store is on Citus (``ledger db distribute``), asked once: the layout
        changes only by that command, run before the writers start."""
        if self._distributed is None:
            with self._pool.connection() as conn:
                self._distributed = store_placement.store_is_distributed(conn, self._schema)
                conn.commit()
        return self._distributed

    def _attempt_distributed(self, heartbeats: list[Heartbeat], lookups: Lookups) -> list[Result]:
        """The group on Citus (``ledger.playback.distributed``): facts read by statements
        Citus plans, decided by ``decide``, written per organization under each one's own
        positions' lock (no lock of the coordinator), committed in one transaction; a race
        lost meanwhile raises as on one server, ``_Missing`` rolls it back as ``_attempt``
        does."""
        with self._pool.connection() as conn:
            # the facts read statement by statement (read committed, as inside a transaction),
            # outside the write's transaction: a read of every worker (the log, the content
            # not known yet) in it would make its commit a two-phase one
            conn.autocommit = True
            try:
                rows = distributed.facts(conn, self._schema, heartbeats)
                decided = decide(heartbeats, self._facts(heartbeats, rows, lookups))
                distributed.release_keys(conn, self._schema, heartbeats, rows, decided)
                accepted = [h for h, _ in decided.accepted]
                days = distributed.missing_days(conn, self._schema, accepted)
                if not days:  # keys first, each on its shard (i28y)
                    distributed.claim_keys(conn, self._schema, accepted)
            finally:
                conn.autocommit = False
            if days:
                raise _Missing(days)
            with conn.transaction():
                positions = distributed.write(conn, self._schema, decided)
        drawn = iter(positions[m] for m in range(len(positions)))
        return [
            Result("accepted", position=next(drawn)) if r is None else r for r in decided.results
        ]

    def _missing(
        self, heartbeats: list[Heartbeat], rows: list[Any], lookups: Lookups
    ) -> _Missing | None:
        """What the statement could not decide without (it wrote nothing then): the log's
        answers, asked for every heartbeat at once as ``_facts`` asks them, and the days
        whose partitions are missing."""
        statuses = {row["status"] for row in rows}
        if "lookup" not in statuses and "partition" not in statuses:
            return None
        missing = _Missing(
            {
                partitions.day(h.occurred_at)
                for h, row in zip(heartbeats, rows, strict=True)
                if row["status"] == "partition"
            }
        )
        for h, row in zip(heartbeats, rows, strict=True):
            if not row["user_live"] and ("user", h.user_id) not in lookups.why:
                missing.why.add(("user", h.user_id))
            if row["organization_id"] is None and ("content", h.content_id) not in lookups.why:
                missing.why.add(("content", h.content_id))
            if row["legacy"] and (h.user_id, h.content_id) not in lookups.legacy:
                missing.legacy.add((h.user_id, h.content_id))
            if row["log_key"] and h.key is not None and h.key not in lookups.keys:
                missing.keys.add(h.key)
        return missing

    @staticmethod
    def _answer(h: Heartbeat, row: Any, lookups: Lookups) -> Result:
        """The statement's decision as the answer ``decide`` gives, its error built by the
        same functions (the access rule's message by ``check_playable`` itself)."""
        status = row["status"]
        if status == "accepted":
            return Result("accepted", position=row["position"])
        if status == "duplicate":
            return DUPLICATE
        error: Rejected
        if status == "conflict":
            error = key_conflict(h, "playback.progress")
        elif status == "log_conflict":  # the key of a money command, named by the log
            used = lookups.keys[h.key] if h.key is not None else None
            error = key_conflict(h, used[1] if used is not None else "playback.progress")
        elif status == "no_user":
            error = not_found(h, "user", lookups.why[("user", h.user_id)])
        elif status == "no_content":
            error = not_found(h, "content", lookups.why[("content", h.content_id)])
        elif status == "horizon":
            error = before_horizon(h, row["horizon"])
        else:
            since, expires = row["access_since"], row["access_expires"]
            try:
                check_playable(
                    h.user_id, h.content_id, h.occurred_at, since is not None, since, expires
                )
            except Rejected as refused:
                error = refused
            else:
                raise RuntimeError(f"the store refused a playable heartbeat ({status})")
        return Result("rejected", error=error)

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
            rendered(self._schema)["facts"],
            (dumps(group),),
            prepare=True,
        ).fetchall()

    def _facts(self, heartbeats: list[Heartbeat], rows: list[Any], lookups: Lookups) -> list[Facts]:
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

    def _look_up(self, missing: _Missing, lookups: Lookups) -> None:
        for kind, entity in missing.why:
            lookups.why[(kind, entity)] = self._explain(kind, entity)
        for key in missing.keys:
            lookups.keys[key] = self._log_key(key)
        for pair in missing.legacy:
            lookups.legacy[pair] = self._legacy(*pair)

    def _create(self, days: set[date]) -> None:
        """Creates the days' partitions (the statement found them missing), in a short
        transaction of their own."""
        with self._pool.connection() as conn:
            missing = days - set(partitions.existing(conn, self._schema))
            conn.commit()
            if missing:
                partitions.create(conn, self._schema, missing)
                conn.commit()
