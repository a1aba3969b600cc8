"""Fixtures: a real PostgreSQL for every database test, and a schema of its own per test.

``LEDGER_TEST_DATABASE_URL`` points the suite at a server (CI: the local
PostgreSQL 15, then a Citus coordinator started by ``.ci/citus run``); without it the suite
starts the embedded PostgreSQL in a temporary ``LEDGER_HOME`` of its own, made once per run and
shared by the xdist workers, never the home a user has exported (whose server the suite would
otherwise use, fill and stop). Each test gets a schema of its own, exactly what a migration
makes: most are reset and renamed from an earlier test's (``tests/schemas.py``).
Tests marked ``citus`` need a Citus cluster: deselected on a single server, failed (never skipped)
when ``LEDGER_TEST_CITUS=1`` says the run is on one (``tests/citus_support.py``).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis.control import current_build_context
from hypothesis.errors import InvalidArgument
from psycopg import sql

from ledger import api
from ledger.config import Settings
from ledger.service import Ledger
from tests import citus_support, ordering
from tests.schemas import SchemaPool

# Database-backed properties are slow per example: a moderate default, more with
# HYPOTHESIS_PROFILE=thorough (the manual, larger run).
hypothesis_settings.register_profile(
    "default",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
hypothesis_settings.register_profile(
    "thorough",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


_HOMES_MADE: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """The run's own embedded home, made by the controller before any worker starts
    (workers inherit it with the environment). Ctrl-C restored to Python's own handler:
    a suite started in the background of a non-interactive shell inherits SIGINT ignored,
    which its children would inherit too, and the tests of what an interrupt does would
    test nothing (a handler, unlike an ignored signal, is reset to the default by exec)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if hasattr(config, "workerinput"):
        return
    if os.environ.get("LEDGER_TEST_DATABASE_URL"):
        _vacuum_without_autovacuum(os.environ["LEDGER_TEST_DATABASE_URL"])
        return
    # in the temporary directory itself: run as root, the server's own account must be
    # able to reach it (pytest's base temporary directory is closed to other users)
    os.environ["LEDGER_HOME"] = tempfile.mkdtemp(prefix="ledger-test-home-")
    _HOMES_MADE.append(os.environ["LEDGER_HOME"])


def _vacuum_without_autovacuum(url: str) -> None:
    """A run makes and drops some fifty schemas and resets a thousand: tens of thousands
    of dead rows in the server's catalogue (pg_class, pg_attribute, pg_depend). On a
    server with autovacuum off (this machine's CI server is configured so) nothing
    removes them, every catalogue lookup of the next run wades through them, and each
    run is slower than the last: 183 s on a fresh server, 377 s after a day of runs
    (docs/testing.md, "Sixth pass"). So the controller vacuums the database first, as
    autovacuum would have (a second or so; nothing to do when autovacuum is on)."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            off = conn.execute("SELECT current_setting('autovacuum') = 'off'").fetchone()
            if off is not None and off[0]:
                conn.execute("VACUUM")
    except psycopg.Error:
        return  # the tests that need the server say so themselves, with their own error


@pytest.fixture(scope="session")
def database_url() -> str:
    configured = os.environ.get("LEDGER_TEST_DATABASE_URL")
    if configured:
        return configured
    from ledger.database import embedded

    return embedded.url()


_CITUS: dict[str, str | None] = {}


def _citus_version(url: str) -> str | None:
    """The server's Citus version (None: a single PostgreSQL), asked once per process."""
    if url not in _CITUS:
        _CITUS[url] = citus_support.citus_version(url)
    return _CITUS[url]


def _on_citus() -> bool:
    url = os.environ.get("LEDGER_TEST_DATABASE_URL")
    return url is not None and url != "" and _citus_version(url) is not None


_SINGLE_SERVER: dict[str, list[str]] = {}  # this run's tests deselected so, by reason


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest tests' modules first (the rest in their order). Tests marked ``citus``
    are deselected on a single server (no skip shows: they are not this run's tests);
    with ``LEDGER_TEST_CITUS=1`` they stay, and fail in setup below. Tests marked
    ``single_server`` are deselected in a run that distributes its schemas, their reasons
    kept for the summary (an xdist worker sends them to the controller)."""
    items.sort(key=ordering.longest_first)
    by_reason = citus_support.single_server_tests(items)
    if by_reason and citus_support.distribute_requested() and _on_citus():
        _SINGLE_SERVER.update(by_reason)
        if hasattr(config, "workeroutput"):
            config.workeroutput[citus_support.SINGLE_SERVER] = by_reason
        gone = {nodeid for nodeids in by_reason.values() for nodeid in nodeids}
        config.hook.pytest_deselected(items=[item for item in items if item.nodeid in gone])
        items[:] = [item for item in items if item.nodeid not in gone]
    marked = [item for item in items if item.get_closest_marker("citus") is not None]
    if not marked or citus_support.required() or _on_citus():
        return
    config.hook.pytest_deselected(items=marked)
    items[:] = [item for item in items if item.get_closest_marker("citus") is None]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """An xdist worker's tests deselected as the single server's, for the summary."""
    output = getattr(node, "workeroutput", {})
    for reason, nodeids in output.get(citus_support.SINGLE_SERVER, {}).items():
        known = _SINGLE_SERVER.setdefault(reason, [])
        known.extend(nodeid for nodeid in nodeids if nodeid not in known)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Which tests this distributed run left out, and why (``single_server`` markers)."""
    if not _SINGLE_SERVER or hasattr(terminalreporter.config, "workerinput"):
        return
    count = sum(len(nodeids) for nodeids in _SINGLE_SERVER.values())
    terminalreporter.section(f"{count} deselected: premises of the single server")
    for reason, nodeids in _SINGLE_SERVER.items():
        terminalreporter.write_line(f"{reason}:")
        for nodeid in nodeids:
            terminalreporter.write_line(f"    {nodeid}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``citus`` runs only against a Citus coordinator; with
    ``LEDGER_TEST_CITUS=1`` a server without Citus fails it (never skips it)."""
    if item.get_closest_marker("citus") is None or _on_citus():
        return
    url = os.environ.get("LEDGER_TEST_DATABASE_URL")
    pytest.fail(
        f"{citus_support.REQUIRED_ENV}=1 but LEDGER_TEST_DATABASE_URL ({url or 'unset'}) "
        "is not a Citus coordinator: run the suite with `.ci/citus run -- ...`",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def citus(database_url: str) -> citus_support.CitusCluster:
    """The Citus cluster the suite runs against (tests marked ``citus`` only)."""
    version = _citus_version(database_url)
    assert version is not None, "only tests marked citus use this fixture"
    return citus_support.CitusCluster(
        url=database_url,
        version=version,
        directory=os.environ.get("LEDGER_CITUS_DIR"),
        binaries=os.environ.get("LEDGER_CITUS_BIN"),
    )


@pytest.fixture
def distributed(citus: citus_support.CitusCluster, settings: Settings) -> Settings:
    """The test's schema placed by ``ledger db distribute`` on the cluster."""
    _distribute(settings)
    return settings


@pytest.fixture
def no_recovery(citus: citus_support.CitusCluster) -> Iterator[None]:
    """The coordinator's two-phase-commit recovery held off for the test, so every row it
    writes to ``pg_dist_transaction`` stays there to be counted."""
    with psycopg.connect(citus.url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET citus.recover_2pc_interval TO -1")
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield
    finally:
        with psycopg.connect(citus.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET citus.recover_2pc_interval")
            conn.execute("SELECT pg_reload_conf()")


def _stop_embedded_server() -> None:
    if not os.environ.get("LEDGER_TEST_DATABASE_URL") and os.environ.get("LEDGER_HOME"):
        from ledger.database import embedded

        embedded.stop()
        for made in _HOMES_MADE:
            shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _stop_embedded_server_at_exit(request: pytest.FixtureRequest) -> Iterator[None]:
    """The suite's embedded server lives in the run's temporary LEDGER_HOME: stop it at the
    end and remove the home. Under pytest-xdist, the workers share the controller's home
    and server: the controller stops it once they are all done (``pytest_sessionfinish``)."""
    yield
    if not hasattr(request.config, "workerinput") or _HOMES_MADE:
        _stop_embedded_server()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput") and getattr(
        session.config.option, "numprocesses", None
    ):
        _stop_embedded_server()


def _drop_schema(url: str, schema: str) -> None:
    # on a Citus cluster one process at a time (``citus_support.Placing``)
    with citus_support.placing(url).held(), psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(autouse=True)
def _placing_in_the_body(request: pytest.FixtureRequest) -> Iterator[None]:
    """In a distributed run on a Citus coordinator (``LEDGER_TEST_DISTRIBUTE=1``, -n 2), a
    test that places or drops tables in its own body holds the cluster's placing lock from
    setup to teardown, so no other test process places, resets or drops a schema meanwhile
    (their DDL deadlocks on the cluster's one colocation group of reference tables:
    ``citus_support.Placing``). Every other test runs in parallel; on a single server, or
    in a run that distributes nothing, this holds nothing."""
    if not (
        citus_support.distribute_requested()
        and citus_support.places_in_body(request.node.nodeid, request.fixturenames)
        and _on_citus()
    ):
        yield
        return
    with citus_support.placing(os.environ["LEDGER_TEST_DATABASE_URL"]).held():
        yield


@pytest.fixture
def placing_from_here(database_url: str) -> Iterator[citus_support.PlacingFromHere]:
    """Call it where the test first places or drops tables (a rebuild, a verify, a role's or
    a table's DDL): the cluster's placing lock is held from there to the test's end, in a
    distributed run on Citus (``citus_support.PlacingFromHere``); elsewhere nothing."""
    hold = citus_support.PlacingFromHere(
        database_url, citus_support.distribute_requested() and _on_citus()
    )
    try:
        yield hold
    finally:
        hold.release()


@pytest.fixture
def empty_settings(database_url: str) -> Iterator[Settings]:
    """Settings for a schema of this test's own, not yet migrated."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield Settings(url=database_url, schema=schema)
    _drop_schema(database_url, schema)


def _distribute(settings: Settings) -> None:
    from ledger.database import distribution
    from ledger.database.connections import connect

    with connect(settings) as conn:
        distribution.distribute(conn, settings.schema)
        conn.commit()


@pytest.fixture(scope="session")
def settings_pool(database_url: str, schema_pool: SchemaPool) -> Iterator[SchemaPool]:
    """The pool ``settings`` takes from: ``schema_pool`` itself, or with
    ``LEDGER_TEST_DISTRIBUTE=1`` on a Citus coordinator a pool of distributed schemas of its
    own (a distributed schema is never reset into a single-server one, nor the reverse: the
    fingerprint holds where Citus placed each table)."""
    if not (citus_support.distribute_requested() and _citus_version(database_url) is not None):
        yield schema_pool
        return
    pool = SchemaPool(database_url, prepare=_distribute)
    yield pool
    pool.close()


@pytest.fixture
def settings(settings_pool: SchemaPool) -> Iterator[Settings]:
    """Settings for a migrated schema of this test's own; with ``LEDGER_TEST_DISTRIBUTE=1``
    on a Citus coordinator, in the distributed layout too (``ledger db distribute``), so the
    ledger's own tests run against it (.ci/run, docs/scaling.md). Taken from the pool
    (``tests/schemas.py``): exactly what a migration makes, given back when the test and
    every fixture on it are done, reset under a new name for the next test (or dropped
    when the test changed it)."""
    taken = settings_pool.take()
    yield taken
    settings_pool.give(taken.schema)


@pytest.fixture
def ledger_app(settings: Settings) -> Iterator[Ledger]:
    app = api.open_ledger(settings)
    yield app
    app.close()


@pytest.fixture
def conn(settings: Settings) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A plain autocommit connection whose search_path is the test's schema."""
    from ledger.database.connections import connect

    with connect(settings, autocommit=True) as connection:
        yield connection


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """Environment for running the ``ledger`` command against the test's schema."""
    env = dict(os.environ)
    env["LEDGER_DATABASE_URL"] = settings.url
    env["LEDGER_SCHEMA"] = settings.schema
    return env


@pytest.fixture(scope="session")
def schema_pool(database_url: str) -> Iterator[SchemaPool]:
    """This process's migrated schemas, reset and reused by ``fresh`` (``tests/schemas.py``).
    With ``LEDGER_TEST_POOL_REPORT=FILE`` each process appends how many it migrated and how
    many it reused to FILE (docs/testing.md: how the figures of the fifth pass were counted)."""
    pool = SchemaPool(database_url)
    yield pool
    pool.close()
    report = os.environ.get("LEDGER_TEST_POOL_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as out:
            out.write(f"migrated {pool.migrated} reused {pool.reused}\n")


def _example() -> object | None:
    """The hypothesis example running now (None outside one)."""
    try:
        return current_build_context()
    except InvalidArgument:
        return None


@pytest.fixture
def fresh(settings_pool: SchemaPool, schema_pool: SchemaPool) -> Iterator[Callable[[], Settings]]:
    """A factory of freshly migrated schemas, one per hypothesis example (a function-scoped
    fixture is shared by all examples). Each is exactly what a migration makes, but most are
    not migrated anew: the schemas of an example that has ended, and of tests that have
    ended, are reset and reused (``tests/schemas.py``), the rest dropped at the end of the run.
    With ``LEDGER_TEST_DISTRIBUTE=all`` taken from ``settings``' pool, distributed, so the
    properties are tried on the distributed layout (docs/scaling.md, "The suite on the
    cluster"); with ``=1`` single-server schemas, on the coordinator."""
    if citus_support.distribute_fresh_requested():
        schema_pool = settings_pool
    in_use: list[str] = []
    owner: list[object | None] = [None]

    def make() -> Settings:
        example = _example()
        if example is not None and example is not owner[0]:
            # a new hypothesis example: the last one's schemas are done with (outside
            # hypothesis a test keeps every schema it made until it ends)
            for schema in in_use:
                schema_pool.give(schema)
            in_use.clear()
            owner[0] = example
        settings = schema_pool.take()
        in_use.append(settings.schema)
        return settings

    yield make
    for schema in in_use:
        schema_pool.give(schema)
