"""A batch answers each command with the position of its own last event, as one by one does
(issue 28: ``test_group_equivalence.py``'s property failed on the distributed layout).

A batch of several chains' commands is one append whose events go in one ``INSERT ...
SELECT``. On one server its ``RETURNING`` rows come back in the rows' order; on a
distributed log Citus returns them shard by shard, so the answers took each other's
positions (the first command answered position 2 where one by one answers 1). The
recorder now pairs each returned position with its event by the event's key, on both
layouts; this shows it on whichever layout the run gives (``LEDGER_TEST_DISTRIBUTE=1``:
both schemas distributed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from ledger import api
from ledger.config import Settings
from tests.schemas import SchemaPool
from tests.support import CONTENT, CONTENT_2, ORG, ORG_2, complete, org, publish, user

# three chains (two organizations' and the platform's), their commands interleaved so that
# a chain's events are not together in the batch
HISTORY: list[dict[str, Any]] = [
    org(ORG_2, "Southwind"),
    user("alice"),
    org(ORG),
    user("creator"),
    publish(CONTENT_2, ORG_2),
    publish(CONTENT, ORG),
    user("bob"),
    complete("pi_1", "alice", CONTENT),
    complete("pi_2", "bob", CONTENT_2),
    org(ORG),  # a duplicate among them
    complete("pi_3", "alice", CONTENT_2),
]


@pytest.fixture
def other(settings_pool: SchemaPool) -> Iterator[Settings]:
    """A second schema of the same layout as ``settings``' (the pool of ``settings``)."""
    taken = settings_pool.take()
    yield taken
    settings_pool.give(taken.schema)


def answered(settings: Settings, batch: int) -> list[dict[str, Any]]:
    lines = [json.dumps(command) for command in HISTORY]
    with api.open_ledger(settings) as app:
        return [r.as_dict(n) for n, r in api.append_lines(app, lines, batch=batch)]


@pytest.mark.parametrize("size", [len(HISTORY), 4])
def test_a_batch_of_several_chains_answers_the_positions_one_by_one_answers(
    settings: Settings, other: Settings, size: int
) -> None:
    alone = answered(other, 1)
    assert [a["status"] for a in alone].count("accepted") == len(HISTORY) - 1
    assert answered(settings, size) == alone
