"""The Citus cluster behind ``LEDGER_TEST_DATABASE_URL``, for the tests marked ``citus``.

``.ci/citus run -- python -m pytest -m citus`` starts a coordinator and two workers, points
``LEDGER_TEST_DATABASE_URL`` at the coordinator and sets ``LEDGER_TEST_CITUS=1``. A test marked
``@pytest.mark.citus`` then runs; on a single server it is deselected, and with
``LEDGER_TEST_CITUS=1`` against a server without Citus every such test fails instead, so a CI
stage meant for the cluster can never pass by skipping them (``tests/conftest.py``).

What lives where is asked of the cluster itself (``citus_shards``), and a row is counted on the
worker that holds it by reading the shard table there, not through the coordinator.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# the placing lock and the server's Citus version, named here as before they moved
from tests.placing import PLACING_LOCK as PLACING_LOCK
from tests.placing import Placing as Placing
from tests.placing import citus_version as citus_version
from tests.placing import placing as placing

REQUIRED_ENV = "LEDGER_TEST_CITUS"


def required() -> bool:
    """Whether the run says it is against a Citus cluster (``.ci/citus run`` sets it)."""
    return os.environ.get(REQUIRED_ENV, "") not in ("", "0")


DISTRIBUTE_ENV = "LEDGER_TEST_DISTRIBUTE"


def distribute_requested() -> bool:
    """Whether each test's migrated schema is to be distributed as well (on a Citus
    coordinator: ``LEDGER_TEST_DISTRIBUTE=1``; .ci/run runs the ledger's tests so)."""
    return os.environ.get(DISTRIBUTE_ENV, "") not in ("", "0")


def distribute_fresh_requested() -> bool:
    """Whether ``fresh``'s schemas (the property tests', one per example) are distributed too:
    ``LEDGER_TEST_DISTRIBUTE=all``. Not with ``=1`` (.ci/run's): a distributed schema's reset
    costs five to ten times a single-server one's, 3-7 s an example on this machine
    (docs/scaling.md, "The suite on the cluster")."""
    return os.environ.get(DISTRIBUTE_ENV, "") == "all"


# The tests whose own body places or drops tables on the cluster (a migration, a rebuild's
# shadow tables and switch, a consumer's table, a day's partition of the playback store,
# `ledger db roles`' grants): in a distributed run they hold ``Placing`` from setup to
# teardown (``tests/conftest.py``), as a schema pool's take does, since their DDL deadlocks
# with another process's placing just the same (``canceling the transaction since it was
# involved in a distributed deadlock``: a rebuild's shadow build and a test's own migration
# did, 2026-12-05). By module, and by test where a module has one such test among many.
# A test that asks for the fixture ``placing_from_here`` holds it from its first placing act
# on instead (``PlacingFromHere``): its body appends and reads first, in parallel. So do
# ``test_rebuild.py``'s (i28c), and, out of this list since i28l, those of
# ``test_stale_projections``, ``test_verify_and_status``, ``test_rebuild_chains``,
# ``test_event_catalogue``, ``test_playback_store`` and the golden logs'. Of
# ``test_chains`` only the tests of an ``empty_settings`` schema place (they migrate it, and
# hold the lock through their bodies as every such test does): switching the log's order
# writes a row since migration 0018, no DDL.
PLACING_MODULES = frozenset(
    f"tests/integration/{name}.py"
    for name in (
        "test_citus_schema_pool",
        "test_consumer_chains",
        "test_consumers",
        "test_database_url",
        "test_downgrade_on_citus",
        "test_erasure_roles",
        "test_golden_v4",
        "test_http_scopes",
        "test_log_order",
        "test_migrations",
        "test_operator_answers_in_one_line",
        "test_operator_safety",
        "test_playback_compaction",
        "test_roles",
        "test_roles_bound_logins",
        "test_roles_own_objects",
        "test_schema_pool",
    )
)
PLACING_TESTS = frozenset(
    {
        "tests/integration/test_http_commands.py::test_a_batch_is_answered_as_ledger_append_answers_its_lines",
        # its login's CREATE, ALTER and DROP ROLE, which Citus carries to every node: beside a
        # rebuild's placing, a distributed deadlock (the clean-clone run of 2026-12-05 17:19)
        "tests/integration/test_cli_exits.py::test_a_database_lost_mid_run_exits_two_after_answering_what_committed",
    }
)


class PlacingFromHere:
    """The placing lock from the moment a test first places (``__call__``) to its end
    (``release``), for the tests whose body does a long while of appends and reads before
    it places anything: holding it through the whole body (``PLACING_MODULES``) left the
    other test process waiting at its next schema meanwhile (``test_rebuild.py``: its
    demo history appended and read, nearly two thirds of its holds; docs/scaling.md "The
    stage wider (i28c)"). From the first placing act to the end, as a body's hold: what follows it
    (the rebuild's switch, a verify's shadow, a downgrade, the drop of what it made) is
    never beside another process's placing. Nothing outside a distributed run on Citus."""

    def __init__(self, url: str, active: bool) -> None:
        self._placing = placing(url) if active else None
        self._held: AbstractContextManager[None] | None = None

    def __call__(self) -> None:
        if self._placing is not None and self._held is None:
            self._held = self._placing.held()
            self._held.__enter__()

    def release(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            held.__exit__(None, None, None)


def places_in_body(nodeid: str, fixtures: Iterable[str]) -> bool:
    """Whether the test ``nodeid`` places or drops tables itself (above; or it takes an
    ``empty_settings`` schema, which it migrates in its body), and says not where: a test
    that asks for ``placing_from_here`` holds the lock from its call on, not from setup."""
    fixtures = list(fixtures)
    if "placing_from_here" in fixtures:
        return False
    module = nodeid.split("::", 1)[0]
    if module in PLACING_MODULES or "empty_settings" in fixtures:
        return True
    return nodeid.split("[", 1)[0] in PLACING_TESTS


# The tests that cannot hold on a distributed log, each marked in its module with
# ``@pytest.mark.single_server("why")``: their premise is the single server's (one global order
# of the log, its table lock seen in the coordinator's pg_locks, a trigger or a statement the
# test itself puts on the log that Citus refuses on a distributed table). In a run that
# distributes its schemas they are deselected, and the run's summary prints each with its
# reason (``tests/conftest.py``); everywhere else they run. Never for a product failure: those
# fail, and are fixed.
SINGLE_SERVER = "single_server"


def single_server_reason(item: pytest.Item) -> str | None:
    """The reason ``item`` holds only on a single server (None: it holds on both layouts). A
    marker without a reason is a usage error on every run, so none is added unexplained."""
    marker = item.get_closest_marker(SINGLE_SERVER)
    if marker is None:
        return None
    reason = marker.args[0] if marker.args else marker.kwargs.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise pytest.UsageError(
            f'{item.nodeid}: @pytest.mark.{SINGLE_SERVER}("...") needs its reason, a sentence'
        )
    return reason


def single_server_tests(items: Iterable[pytest.Item]) -> dict[str, list[str]]:
    """The tests of ``items`` marked ``single_server``, by reason (every marker checked)."""
    by_reason: dict[str, list[str]] = {}
    for item in items:
        reason = single_server_reason(item)
        if reason is not None:
            by_reason.setdefault(reason, []).append(item.nodeid)
    return by_reason


# the reasons, each a premise a distributed log (the organization order, docs/stream.md) has not
GLOBAL_LOCK = (
    "the log's one table lock, seen in the coordinator's pg_locks: a distributed log locks each"
    " organization's chain on its worker instead (test_log_on_citus.py)"
)
GLOBAL_ORDER = (
    "one global order of the log's positions: a distributed log orders each chain"
    " (test_stream_chains.py)"
)
GLOBAL_POSITION = (
    "a consumer's checkpoint or the feed's cursor as one global number: on a distributed log it"
    " is a map of chains (test_consumer_chains.py, test_stream_chains.py)"
)
ORDER_SWITCH = (
    "switches the log's order itself (its triggers, which Citus refuses, or deadlocks on, on a"
    " distributed table): a distributed log is placed in the organization order by"
    " `ledger db distribute`, and stays in it"
)
LIBRARY_RECORDER = (
    "the eventsourcing library's recorder suite: one global order of notification ids, and its"
    " fixture puts a trigger on the log, which Citus refuses on a distributed table"
)
PLAYBACK_RECORD = (
    "calls the single server's group statement of heartbeats (playback_record, 0025), which a"
    " distributed store does not run: ledger/playback/distributed.py's, test_playback_on_citus.py"
)
REFERENCE_TRIGGER = (
    "puts a trigger of its own on users to see who inserted a row: Citus makes users a"
    " reference table, which takes no triggers (triggers are not supported on reference tables)"
)
STORE_POSITION = (
    "the playback store's positions as one integer order (a cursor refused): a distributed"
    " store takes and gives a cursor of every organization (test_playback_per_organization.py)"
)


def waits_name(session: psycopg.Connection[Any]) -> int:
    """``session``'s backend as lock waits name it: its pid on one server (``pg_locks``); on
    the distributed layout its global pid (node and pid), as ``citus_lock_waits`` has it."""
    if not distribute_requested():
        return session.info.backend_pid
    found = session.execute("SELECT citus_backend_gpid()").fetchone()
    assert found is not None
    return int(found[0])


@dataclass(frozen=True)
class Worker:
    host: str
    port: int


@dataclass(frozen=True)
class Placement:
    """Where one value of a distributed table's distribution column lives."""

    shard_table: str  # schema-qualified name of the shard's table on its worker
    worker: Worker


@dataclass(frozen=True)
class CitusCluster:
    url: str  # the coordinator
    version: str
    directory: str | None = None  # the servers' data (LEDGER_CITUS_DIR), to stop a worker
    binaries: str | None = None  # their pg_ctl (LEDGER_CITUS_BIN)

    @property
    def port(self) -> int:
        return int(conninfo_to_dict(self.url)["port"] or 5432)

    def workers(self) -> list[Worker]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT node_name, node_port FROM citus_get_active_worker_nodes() ORDER BY 2"
            ).fetchall()
        return [Worker(str(host), int(port)) for host, port in rows]

    def placement(self, conn: psycopg.Connection[Any], table: str, value: object) -> Placement:
        """Where the rows of ``table`` (schema-qualified) whose distribution column equals
        ``value`` are stored."""
        row = conn.execute(
            "SELECT s.shard_name::text, s.nodename, s.nodeport FROM citus_shards s"
            " WHERE s.shardid = get_shard_id_for_distribution_column(%s::regclass, %s::text)",
            (table, str(value)),
        ).fetchone()
        if row is None:
            raise LookupError(f"{table} has no shard for {value!r}: is it distributed?")
        return Placement(str(row[0]), Worker(str(row[1]), int(row[2])))

    def on_distinct_workers(
        self, conn: psycopg.Connection[Any], table: str, candidates: Iterable[object], count: int
    ) -> list[object]:
        """The first ``count`` candidates whose rows of ``table`` live on ``count`` different
        workers (Citus places by hash, so which values split is found, not assumed)."""
        chosen: dict[Worker, object] = {}
        for value in candidates:
            worker = self.placement(conn, table, value).worker
            chosen.setdefault(worker, value)
            if len(chosen) == count:
                return list(chosen.values())
        raise LookupError(f"fewer than {count} workers hold rows of {table}")

    def connect_worker(self, worker: Worker) -> psycopg.Connection[Any]:
        """A connection to one worker itself, the coordinator's user and database, with the
        shard tables visible (Citus hides them from ordinary queries on a worker)."""
        params = conninfo_to_dict(self.url)
        params.update(host=worker.host, port=str(worker.port))
        conn = psycopg.connect(make_conninfo("", **params), autocommit=True)
        conn.execute("SET citus.override_table_visibility TO off")
        return conn

    def count_on_worker(self, placement: Placement, column: str, value: object) -> int:
        """Rows of one shard with ``column = value``, counted on the worker that stores it."""
        schema, _, table = placement.shard_table.rpartition(".")
        with self.connect_worker(placement.worker) as conn:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
                    sql.Identifier(schema.strip('"'), table.strip('"')), sql.Identifier(column)
                ),
                (value,),
            ).fetchone()
        return int(row[0]) if row else 0

    @contextmanager
    def stopped(self, worker: Worker) -> Iterator[None]:
        """The worker's server stopped (as a lost machine would be) for the block, started
        again after it, and reachable from the coordinator before the block's end returns.
        Tests that use it must not share the cluster with others running at the same time:
        .ci/run runs the tests marked citus one at a time."""
        if not self.directory or not self.binaries:
            raise RuntimeError(
                "stopping a worker needs LEDGER_CITUS_DIR and LEDGER_CITUS_BIN "
                "(`.ci/citus run` sets them; `eval $(.ci/citus env)` for a cluster started apart)"
            )
        data = Path(self.directory) / f"worker{worker.port - self.port}"
        if not (data / "PG_VERSION").is_file():
            raise RuntimeError(f"no data folder of worker {worker.port} at {data}")
        self._pg_ctl("-D", str(data), "-m", "fast", "-w", "-t", "60", "stop")
        try:
            yield
        finally:
            self._pg_ctl("-D", str(data), "-l", f"{data}.log", "-w", "-t", "60", "start")
            self._wait_reachable(worker)

    def _pg_ctl(self, *arguments: str) -> None:
        command = [str(Path(self.binaries or "") / "pg_ctl"), *arguments]
        if os.geteuid() == 0:  # the servers run as the account citus (.ci/citus)
            command = ["runuser", "-u", "citus", "--", *command]
        subprocess.run(command, cwd="/", check=True, capture_output=True, timeout=120)

    def _wait_reachable(self, worker: Worker, seconds: float = 120.0) -> None:
        deadline = time.monotonic() + seconds
        with psycopg.connect(self.url, autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT citus_check_connection_to_node(%s, %s)", (worker.host, worker.port)
                ).fetchone()
                if row and row[0]:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker {worker.port} is not reachable again")
                time.sleep(0.1)


def organizations() -> Iterator[uuid.UUID]:
    """An endless supply of organization ids, the same on every run."""
    namespace = uuid.UUID("6c1f8a3e-5d1b-4f8e-9a51-1c2d3e4f5a6b")
    n = 0
    while True:
        yield uuid.uuid5(namespace, f"organization-{n}")
        n += 1
