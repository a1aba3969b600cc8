"""The heartbeat access rule is one pure domain function (``ledger.domain.access.
check_playable``): whatever the access window and the heartbeats' times, the PostgreSQL
store, which reads the access row in its one facts statement per group, answers each
heartbeat exactly as that function does, message included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ledger import api
from ledger.config import Settings
from ledger.domain import clock
from ledger.domain.access import check_playable
from ledger.domain.errors import NoAccess
from tests.support import CONTENT, append, catalogue, grant, play, t

# (day, hour) in January 2026: equal times, a heartbeat at the grant's very moment and at
# its expiry's are all drawn
moments = st.tuples(st.integers(min_value=3, max_value=8), st.sampled_from([0, 12, 23]))


def _expected(user: str, at: str, since: str | None, expires: str | None) -> str:
    try:
        check_playable(
            user,
            CONTENT,
            clock.parse(at),
            since is not None,
            clock.parse(since) if since is not None else None,
            clock.parse(expires) if expires is not None else None,
        )
    except NoAccess as error:
        return f"no_access: {error.message}"
    return "accepted"


@given(
    granted=st.none() | moments,
    expires=st.none() | moments,
    beats=st.lists(st.tuples(st.sampled_from(["alice", "bob"]), moments), max_size=8),
)
def test_the_store_answers_as_the_domain_rule(
    fresh: Callable[[], Settings],
    granted: tuple[int, int] | None,
    expires: tuple[int, int] | None,
    beats: list[tuple[str, tuple[int, int]]],
) -> None:
    since = t(*granted) if granted is not None else None
    until = t(*expires) if expires is not None and since is not None else None
    if since is not None and until is not None and until <= since:
        until = None  # a grant expiring before it begins is refused: not this rule's
    setup: list[dict[str, Any]] = list(catalogue())
    if since is not None:
        setup.append(grant("alice", at=since, expires=until))
    with api.open_ledger(fresh()) as app:
        assert all(r.status == "accepted" for r in append(app, *setup))
        # positions differ, so no heartbeat repeats another: every answer is the rule's
        lines = [play(user, n, at=t(*at)) for n, (user, at) in enumerate(beats)]
        answers = append(app, *lines)
    got = ["accepted" if r.error is None else f"{r.error.code}: {r.error.message}" for r in answers]
    expected = [
        _expected(user, t(*at), since if user == "alice" else None, until) for user, at in beats
    ]
    assert got == expected
