"""Business time out of order: whatever order the commands' ``occurred_at`` come in,
the ledger answers and projects as the model says, and no row ever has ``updated_at``
before ``created_at``, nor sees ``updated_at`` or ``last_accessed_at`` move back.

The histories are those of ``test_model_equivalence`` (every command type, redeliveries,
idempotency keys), but each command's time is drawn at random from a few days, so
completions come before their starts, refunds before their completions, heartbeats and
grants arrive late, and equal times happen.
"""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from typing import Any

import psycopg
from hypothesis import given

from ledger import api
from ledger.upkeep.rebuild import rebuild
from ledger.upkeep.verify import verify
from tests.property.model import Model
from tests.property.test_model_equivalence import (
    all_table_rows,
    histories,
    little_memory,
    model_rows,
)
from tests.support import statuses

Stamps = dict[tuple[str, str], tuple[Any, Any, Any]]


def stamps(conn: psycopg.Connection[Any]) -> Stamps:
    """(table, id) -> (created_at, updated_at, last_accessed_at) of every row (every
    table read in one round trip)."""
    found: Stamps = {}
    for table, rows in all_table_rows(conn).items():
        for row in rows:
            found[(table, str(row["id"]))] = (
                row["created_at"],
                row["updated_at"],
                row.get("last_accessed_at"),
            )
    return found


@given(history=histories(shuffled=True))
def test_out_of_order_times_never_move_a_row_back(
    fresh: Any, history: list[dict[str, Any]]
) -> None:
    settings = fresh()
    model = Model()
    # one connection for every read of the example (autocommit: it holds no lock a
    # rebuild's switch would wait for), not one per read
    with psycopg.connect(
        settings.url, options=f"-c search_path={settings.schema}", autocommit=True
    ) as conn:
        with api.open_ledger(settings) as app:
            before: Stamps = {}
            for command in history:
                expected = model.apply(command)
                results = [r for _, r in api.append_lines(app, [json.dumps(command)])]
                assert statuses(results) == [expected], command
                now = stamps(conn)
                for key, (created, updated, accessed) in now.items():
                    assert updated >= created, (key, command)
                    if key in before and before[key][0] == created:  # the same row, still there
                        assert updated >= before[key][1], (key, "updated_at moved back", command)
                        if before[key][2] is not None:
                            assert accessed is not None and accessed >= before[key][2], (
                                key,
                                command,
                            )
                before = now
            live = all_table_rows(conn)
            assert live == model_rows(model)
        # the late facts' decisions are in the log: a rebuild, in memory or spilling almost
        # every row, reproduces every row exactly
        assert verify(settings) == []
        for budget in (None, little_memory):
            with budget() if budget else nullcontext():
                rebuild(settings, stream=open(os.devnull, "w"))  # noqa: SIM115
            assert all_table_rows(conn) == live
