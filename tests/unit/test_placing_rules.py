"""Which tests hold the cluster's placing lock through their bodies in a distributed run
(``tests/citus_support.places_in_body``): a rule of the harness, checked without a cluster."""

from __future__ import annotations

from pathlib import Path

from tests.citus_support import PLACING_MODULES, PLACING_TESTS, places_in_body

ROOT = Path(__file__).resolve().parents[2]


def test_a_placing_module_holds_the_lock_through_the_body() -> None:
    assert places_in_body("tests/integration/test_roles.py::test_x", ["settings", "roles"])


def test_a_test_that_says_where_it_places_holds_it_from_there_only() -> None:
    """``placing_from_here`` wins over the module's and ``empty_settings``' body hold: the
    test calls it before its first placing act (i28l)."""
    fixtures = ["settings", "empty_settings", "placing_from_here"]
    assert not places_in_body("tests/integration/test_roles.py::test_x", fixtures)
    assert not places_in_body("tests/integration/test_rows.py::test_x", fixtures)


def test_an_empty_schema_is_migrated_in_the_body_so_held() -> None:
    assert places_in_body("tests/integration/test_rows.py::test_x", ["empty_settings"])
    assert not places_in_body("tests/integration/test_rows.py::test_x", ["settings"])


def test_a_placing_test_holds_it_with_every_parameter() -> None:
    nodeid = sorted(PLACING_TESTS)[0]
    assert places_in_body(f"{nodeid}[a-parameter]", ["settings"])


def test_every_named_module_and_test_exists() -> None:
    named = {*PLACING_MODULES, *(nodeid.split("::", 1)[0] for nodeid in PLACING_TESTS)}
    assert sorted(name for name in named if not (ROOT / name).is_file()) == []
    for nodeid in PLACING_TESTS:
        module, test = nodeid.split("::", 1)
        assert f"def {test}(" in (ROOT / module).read_text(encoding="utf-8"), nodeid
