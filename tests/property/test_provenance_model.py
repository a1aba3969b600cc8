"""Random histories delivered from random sources: the source never changes an answer or a
row, and every event carries the provenance of the delivery that recorded it."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import psycopg
from hypothesis import given
from hypothesis import strategies as st

from ledger import api
from ledger.domain.provenance import SOURCES
from tests.property.model import Model
from tests.property.test_model_equivalence import all_table_rows, histories, model_rows
from tests.support import statuses


@given(history=histories(), sources=st.lists(st.sampled_from(SOURCES), min_size=1, max_size=8))
def test_the_source_never_changes_an_answer_and_every_event_names_its_delivery(
    fresh: Any, history: list[dict[str, Any]], sources: list[str]
) -> None:
    settings = fresh()
    model = Model()
    expected = [model.apply(c) for c in history]
    delivered: dict[str, tuple[str, Any]] = {}  # correlation id -> (source, key)
    answers = []
    with api.open_ledger(settings) as app:
        for number, command in enumerate(history):
            source = sources[number % len(sources)]
            name = f"delivery-{number}"
            [(_, result)] = api.append_lines(app, [json.dumps(command)], source=source, name=name)
            answers.append(result)
            # heartbeats are recorded in the playback store, which keeps no provenance
            if result.status == "accepted" and command["type"] != "playback.progress":
                delivered[f"{name}:1"] = (source, command.get("idempotency_key"))
    assert statuses(answers) == expected
    with psycopg.connect(settings.url, options=f"-c search_path={settings.schema}") as conn:
        assert all_table_rows(conn) == model_rows(model)
        recorded: dict[str, set[tuple[str, Any]]] = defaultdict(set)
        for (state,) in conn.execute(
            "SELECT convert_from(state, 'UTF8')::jsonb FROM ledger_events"
        ).fetchall():
            recorded[state["correlation_id"]].add((state["source"], state["idempotency_key"]))
    # only accepted deliveries recorded events, each with its own source and key
    assert {cid: {value} for cid, value in delivered.items()} == dict(recorded)
