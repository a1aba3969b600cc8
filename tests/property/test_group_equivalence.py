"""Group commit changes no answer: any history gives the same answers and the same tables
appended one by one, in groups of any size (``--batch``), or by concurrent callers taken in
the order the ledger decided and recorded them."""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from hypothesis import event, given
from hypothesis import strategies as st

import ledger
from ledger import api
from ledger.cli.batches import ready_groups
from ledger.commands.access import RecordPlayback
from ledger.commands.base import Command
from ledger.commands.parsing import parse_command
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.domain.errors import Rejected
from ledger.playback.decide import Heartbeat
from tests.property.test_model_equivalence import all_table_rows, histories


def tables(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    with psycopg.connect(settings.url, options=f"-c search_path={settings.schema}") as conn:
        return all_table_rows(conn)


def one_by_one(settings: Settings, lines: list[str]) -> list[dict[str, Any]]:
    with api.open_ledger(settings) as app:
        return [r.as_dict(n) for n, r in api.append_lines(app, lines)]


@given(history=histories(), data=st.data())
def test_any_batch_size_answers_and_projects_as_one_by_one(
    fresh: Callable[[], Settings], history: list[dict[str, Any]], data: st.DataObject
) -> None:
    size = data.draw(st.integers(min_value=1, max_value=max(1, len(history))), label="batch")
    lines = [json.dumps(c) for c in history]
    alone, grouped = fresh(), fresh()
    expected = one_by_one(alone, lines)
    with api.open_ledger(grouped) as app:
        batched = [r.as_dict(n) for n, r in api.append_lines(app, lines, batch=size)]
    assert batched == expected  # statuses, errors and positions alike
    assert tables(grouped) == tables(alone)


def parsed(history: list[dict[str, Any]]) -> list[Command]:
    commands = []
    for fields in history:
        with contextlib.suppress(Rejected):  # a line that does not parse never reaches a group
            commands.append(parse_command(json.dumps(fields)))
    return commands


def key(command: Command) -> str:
    return command.model_dump_json()


@given(history=histories(), callers=st.integers(min_value=2, max_value=6))
def test_concurrent_callers_answer_as_one_by_one_in_the_order_recorded(
    fresh: Callable[[], Settings], history: list[dict[str, Any]], callers: int
) -> None:
    commands = parsed(history)
    concurrent, alone = fresh(), fresh()
    decided: list[Command] = []
    sizes: list[int] = []
    answers: list[tuple[str, dict[str, Any]]] = []
    lock = threading.Lock()
    # one group at a time across the lanes (the money log's and the playback store's): the
    # order recorded is then the order committed; lanes committing at once are tested by
    # the playback store's race tests
    turn = threading.Lock()
    with api.open_ledger(concurrent) as app:

        def recording(
            execute_group: Callable[[Sequence[Command]], list[Result]],
        ) -> Callable[[Sequence[Command]], list[Result]]:
            def run(group: Sequence[Command]) -> list[Result]:
                with turn:
                    # a heartbeat queues identified in its caller's thread (service/lanes.py)
                    decided.extend(c.command if isinstance(c, Heartbeat) else c for c in group)
                    sizes.append(len(group))
                    return execute_group(group)

            return run

        for lane in (app.groups.money, *app.groups.playback):
            lane._execute_group = recording(lane._execute_group)

        def call(mine: list[Command]) -> None:
            for command in mine:
                result = ledger.append(app, command)
                with lock:
                    answers.append((key(command), result.as_dict(0)))

        threads = [
            threading.Thread(target=call, args=(commands[n::callers],)) for n in range(callers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert len(decided) == len(commands)
    event("some calls were grouped" if any(s > 1 for s in sizes) else "no two calls met")
    # the order decided is the order recorded: positions rise along it
    with api.open_ledger(alone) as solo:
        expected = [(key(c), solo.execute(c).as_dict(0)) for c in decided]
    assert sorted(answers, key=repr) == sorted(expected, key=repr)
    for store in (True, False):  # the log's positions and the playback store's, each rising
        positions = [
            a["position"]
            for c, (_, a) in zip(decided, expected, strict=True)
            if "position" in a and isinstance(c, RecordPlayback) is store
        ]
        assert positions == sorted(positions)
    assert tables(concurrent) == tables(alone)


@given(
    lines=st.lists(
        st.sampled_from([b"{}\n", b"\n", b"  \n", b'{"a": 1}\n', b"x" * 70_000 + b"\n"]),
        max_size=40,
    ),
    tail=st.sampled_from([b"", b"{}", b"last"]),
    size=st.integers(min_value=1, max_value=12),
    max_bytes=st.integers(min_value=1, max_value=200_000),
    piped=st.booleans(),
)
def test_ready_groups_cut_the_input_without_losing_or_reordering_a_byte(
    lines: list[bytes], tail: bytes, size: int, max_bytes: int, piped: bool
) -> None:
    payload = b"".join(lines) + tail
    if piped:
        read_end, write_end = os.pipe()

        def write() -> None:
            with os.fdopen(write_end, "wb") as sink:
                sink.write(payload)

        writer = threading.Thread(target=write)
        writer.start()
        with os.fdopen(read_end, "rb") as source:
            groups = list(ready_groups(source, size, max_bytes))
        writer.join()
    else:
        groups = list(ready_groups(io.BytesIO(payload), size, max_bytes))
    assert b"".join(b"".join(g) for g in groups) == payload
    for group in groups:
        assert group
        assert sum(1 for line in group if line.strip()) <= size
        assert sum(len(line) for line in group[:-1]) < max_bytes  # cut once over the bound
