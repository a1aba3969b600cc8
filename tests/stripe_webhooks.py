"""The served Stripe webhook of ``test_stripe_webhook*.py``: a client that signs what it
posts, the router alone in an app appending through ``ledger.append``, and the purchases'
rows and succeeded payments the tests read and send."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from ledger import api
from ledger.commands.base import Command
from ledger.commands.results import Result
from ledger.http.stripe_webhook import PATH, stripe_router
from ledger.service import Ledger
from tests import support
from tests.stripe_support import (
    SECRET,
    body_of,
    event,
    payment_intent,
    serving,
    signature,
)


class Webhook:
    """A client of the served webhook, and what the router told the metrics."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.outcomes: list[tuple[str, str]] = []

    def post(
        self,
        payload: dict[str, Any] | bytes,
        secret: str = SECRET,
        at: int | None = None,
        header: str | None = None,
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else body_of(payload)
        signed = signature(body, secret, at) if header is None else header
        return self.client.post(
            PATH,
            content=body,
            headers={"Stripe-Signature": signed, "Content-Type": "application/json"},
        )


Serve = Callable[..., AbstractContextManager[Webhook]]


@pytest.fixture
def serve(ledger_app: Ledger) -> Serve:
    """The router alone in an app, with ``submit`` appending through ``ledger.append``."""
    support.append(ledger_app, *support.catalogue())

    async def submit(command: Command) -> Result:
        return await asyncio.to_thread(api.append, ledger_app, command)

    @contextmanager
    def served(
        secrets: Sequence[str] = (SECRET,), tolerance_seconds: int = 300
    ) -> Iterator[Webhook]:
        outcomes: list[tuple[str, str]] = []
        app = FastAPI()
        app.include_router(
            stripe_router(submit, secrets, tolerance_seconds, lambda t, o: outcomes.append((t, o)))
        )
        with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            webhook = Webhook(client)
            webhook.outcomes = outcomes
            yield webhook

    return served


@pytest.fixture
def webhook(serve: Serve) -> Iterator[Webhook]:
    with serve() as served:
        yield served


def purchase(conn: psycopg.Connection[Any], intent: str) -> tuple[Any, ...] | None:
    return conn.execute(
        "SELECT status, amount_paid_cents, currency, platform_fee_cents, organization_fee_cents,"
        " creator_payout_cents, refunded_amount_cents FROM purchases WHERE stripe_payment_intent_id = %s",
        (intent,),
    ).fetchone()


def succeeded(event_id: str, intent: str, **kwargs: Any) -> dict[str, Any]:
    return event(event_id, "payment_intent.succeeded", payment_intent(intent, **kwargs))
