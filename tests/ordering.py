"""The order the suite's tests are handed to the xdist workers in (``tests/conftest.py``
sorts the collected items by it)."""

from __future__ import annotations

import pytest

# the modules of the longest tests, by their longest test (``--durations=100`` of two quiet
# runs with -n 3, PostgreSQL 15 and the embedded server, the longer of the two; 2026-12-05
# 16:51-16:59 UTC: docs/testing.md), run first: with ``--dist worksteal`` a long test
# started last would otherwise leave the other workers idle; a module split in parts (for the
# 400 lines of tests/unit/test_layout.py) keeps its place, its parts after it
LONGEST_FIRST = (
    "tests/property/test_business_time.py",
    "tests/property/test_model_equivalence.py",
    "tests/integration/test_benchmarks_smoke.py",
    "tests/integration/test_append_limits.py",
    "tests/property/test_people_facts.py",
    "tests/property/test_state_machine.py",
    "tests/integration/test_http_database_lost.py",
    "tests/property/test_group_equivalence.py",
    "tests/property/test_revenue_model.py",
    "tests/property/test_erasure_model.py",
    "tests/integration/test_http_feed.py",
    "tests/integration/test_http_feed_headers.py",
    "tests/integration/test_faults.py",
    "tests/integration/test_demo.py",
    "tests/integration/test_group_commit.py",
    "tests/integration/test_group_commit_lists.py",
    "tests/integration/test_group_commit_interrupts.py",
    "tests/integration/test_cli_exits.py",
    "tests/integration/test_embedded_server.py",
    "tests/integration/test_stream_order.py",
    "tests/property/test_playback_sql_decision.py",
    "tests/integration/test_http_signals.py",
    "tests/integration/test_rebuild.py",
    "tests/integration/test_consumers.py",
    "tests/integration/test_log_order.py",
    "tests/integration/test_golden_log.py",
    "tests/property/test_playback_access_rule.py",
    "tests/integration/test_memory_parity.py",
    "tests/property/test_provenance_model.py",
    "tests/integration/test_operator_safety.py",
    "tests/integration/test_operator_answers_in_one_line.py",
    "tests/integration/test_concurrency.py",
)


def longest_first(item: pytest.Item) -> int:
    module = item.nodeid.split("::", 1)[0]
    return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)
