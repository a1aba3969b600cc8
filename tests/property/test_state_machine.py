"""A model-based test: hypothesis drives the real ledger and the model side by side.

Each step sends one command (a purchase, a refund, a grant, a revoke, a playback
heartbeat, or an earlier command delivered again) to the ledger through the Python
API and to the model (tests/property/model.py). After every step: the answers agree,
every projected table equals the model's rows, no purchase is refunded beyond what was
paid, and the revenue report's totals equal sums kept here by the contract's rules
(gross of accepted completions, accepted refunds, the cumulative split of refunds).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from fractions import Fraction
from typing import Any

import psycopg
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledger import api
from ledger.audit.revenue import MONEY, RevenueQuery, revenue
from tests.property.model import Model
from tests.property.test_model_equivalence import (
    CONTENTS,
    INTENTS,
    PRICES,
    SETUP,
    USERS,
    _at,
    all_table_rows,
    model_rows,
)
from tests.schemas import SchemaPool
from tests.support import statuses

content_ids = st.sampled_from(sorted(CONTENTS))
users = st.sampled_from(USERS)
intents = st.sampled_from([*INTENTS, "pi_4", "pi_5", "pi_6", "pi_7", "pi_8"])


class LedgerMachine(RuleBasedStateMachine):
    sent = Bundle("sent")

    def __init__(self, schemas: SchemaPool) -> None:
        super().__init__()
        self.schemas = schemas
        self.settings = schemas.take()  # a migrated schema of its own (tests/schemas.py)
        self.ledger = api.open_ledger(self.settings)
        self.conn = psycopg.connect(
            self.settings.url, autocommit=True, options=f"-c search_path={self.settings.schema}"
        )
        self.model = Model()
        self.minute = 0
        self.deleted = False
        # what the revenue report must say, kept from accepted commands only
        self.currency: dict[str, str] = {}
        self.split: dict[str, tuple[int, int, int]] = {}
        self.refunded: dict[str, int] = defaultdict(int)
        self.expected: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        # the catalogue, the same in every run and not what is tested: one transaction,
        # each answer still the model's
        setup = [dict(command, occurred_at=self.next_moment()) for command in SETUP]
        expected = [self.model.apply(command) for command in setup]
        lines = [json.dumps(command) for command in setup]
        results = [r for _, r in api.append_lines(self.ledger, lines, batch=len(lines))]
        assert statuses(results) == expected == ["accepted"] * len(setup)
        for command in setup:
            self.account(command)

    def teardown(self) -> None:
        self.conn.close()
        self.ledger.close()
        self.schemas.give(self.settings.schema)

    # --- sending -------------------------------------------------------------------

    def next_moment(self) -> str:
        self.minute += 7
        return _at(self.minute)

    def send(self, command: dict[str, Any]) -> str:
        expected = self.model.apply(command)
        results = [r for _, r in api.append_lines(self.ledger, [json.dumps(command)])]
        (answer,) = statuses(results)
        assert answer == expected, (command, answer, expected)
        if answer == "accepted":
            self.account(command)
        return answer

    def account(self, command: dict[str, Any]) -> None:
        """The report's totals by the contract: gross when completed, refunds split
        cumulatively (platform ceil(R*p/A), creator floor(R*c/A), organization the rest)."""
        intent = command.get("stripe_payment_intent_id", "")
        if command["type"] == "purchase.complete":
            currency = command["currency"].lower()
            amount = command["amount_paid_cents"]
            self.currency[intent] = currency
            self.split[intent] = (
                amount,
                command["platform_fee_cents"],
                command["organization_fee_cents"],
            )
            totals = self.expected[currency]
            totals["purchases"] += 1
            totals["gross_cents"] += amount
            totals["platform_fee_cents"] += command["platform_fee_cents"]
            totals["organization_fee_cents"] += command["organization_fee_cents"]
            totals["creator_payout_cents"] += command["creator_payout_cents"]
        elif command["type"] == "purchase.refund":
            amount, platform, organization = self.split[intent]
            before = self.refunded[intent]
            after = before + command["amount_cents"]
            assert after <= amount, "a refund beyond the amount paid was accepted"
            self.refunded[intent] = after
            totals = self.expected[self.currency[intent]]
            creator = amount - platform - organization
            returned_platform = math.ceil(Fraction(after * platform, amount)) - math.ceil(
                Fraction(before * platform, amount)
            )
            returned_creator = after * creator // amount - before * creator // amount
            totals["refunds"] += 1
            totals["refunded_cents"] += command["amount_cents"]
            totals["platform_fee_cents"] -= returned_platform
            totals["creator_payout_cents"] -= returned_creator
            totals["organization_fee_cents"] -= (
                command["amount_cents"] - returned_platform - returned_creator
            )

    # --- rules ---------------------------------------------------------------------

    @rule(
        target=sent,
        intent=intents,
        customer=users,
        content=content_ids,
        amount=st.sampled_from(PRICES),
        currency=st.sampled_from(["usd", "EUR"]),
        shares=st.tuples(st.integers(0, 100), st.integers(0, 100)),
    )
    def purchase(
        self,
        intent: str,
        customer: str,
        content: str,
        amount: int,
        currency: str,
        shares: tuple[int, int],
    ) -> Any:
        platform = amount * shares[0] // 100
        organization = (amount - platform) * shares[1] // 100
        command = {
            "type": "purchase.complete",
            "stripe_payment_intent_id": intent,
            "customer_id": customer,
            "content_id": content,
            "amount_paid_cents": amount,
            "currency": currency,
            "platform_fee_cents": platform,
            "organization_fee_cents": organization,
            "creator_payout_cents": amount - platform - organization,
            "occurred_at": self.next_moment(),
        }
        return command, self.send(command)

    @rule(
        target=sent,
        data=st.data(),
        refund=st.sampled_from(["re_1", "re_2", "re_3", "re_4", "re_5"]),
        amount=st.sampled_from([1, 33, 99, 500, 999, 1000, "rest"]),
    )
    def refund(self, data: st.DataObject, refund: str, amount: int | str) -> Any:
        """Mostly of a purchase that completed (else of any intent), for a part, or
        for exactly what is left."""
        completed = sorted(self.split)
        intent = data.draw(st.sampled_from(completed) if completed else intents)
        if amount == "rest":
            paid = self.split[intent][0] if intent in self.split else 1000
            amount = max(1, paid - self.refunded.get(intent, 0))
        command = {
            "type": "purchase.refund",
            "stripe_payment_intent_id": intent,
            "refund_id": refund,
            "amount_cents": amount,
            "occurred_at": self.next_moment(),
        }
        return command, self.send(command)

    @rule(target=sent, intent=intents)
    def fail(self, intent: str) -> Any:
        command = {
            "type": "purchase.fail",
            "stripe_payment_intent_id": intent,
            "occurred_at": self.next_moment(),
        }
        return command, self.send(command)

    @rule(
        target=sent,
        customer=users,
        content=content_ids,
        kind=st.sampled_from(["subscription", "complimentary", "preview"]),
        days=st.sampled_from([0, 30, 600]),
    )
    def grant(self, customer: str, content: str, kind: str, days: int) -> Any:
        at = self.next_moment()
        command: dict[str, Any] = {
            "type": "access.grant",
            "user_id": customer,
            "content_id": content,
            "access_type": kind,
            "occurred_at": at,
        }
        if days:
            command["expires_at"] = _at(self.minute + days)
        return command, self.send(command)

    @rule(target=sent, customer=users, content=content_ids)
    def revoke(self, customer: str, content: str) -> Any:
        command = {
            "type": "access.revoke",
            "user_id": customer,
            "content_id": content,
            "occurred_at": self.next_moment(),
        }
        return command, self.send(command)

    @rule(
        target=sent,
        customer=users,
        content=content_ids,
        position=st.sampled_from([0, 50, 94, 95, 100]),
    )
    def playback(self, customer: str, content: str, position: int) -> Any:
        command = {
            "type": "playback.progress",
            "user_id": customer,
            "content_id": content,
            "position_seconds": position,
            "duration_seconds": 100,
            "occurred_at": self.next_moment(),
        }
        return command, self.send(command)

    @rule(delivery=sent)
    def deliver_again(self, delivery: tuple[dict[str, Any], str]) -> None:
        """The same command once more, as the model answers it now; what was accepted
        is never applied twice. (A command first answered ``duplicate`` because of the
        state, such as a revoke of a row already gone, was not applied and may be now.)"""
        command, first = delivery
        answer = self.send(dict(command))
        if first == "accepted":
            assert answer != "accepted"

    @precondition(lambda self: not self.deleted)
    @rule(customer=users)
    def delete_user(self, customer: str) -> None:
        """Once per run: a deletion cascades through the tables but not the log."""
        self.deleted = True
        self.send({"type": "user.delete", "user_id": customer, "occurred_at": self.next_moment()})

    # --- after every step ------------------------------------------------------------

    @invariant()
    def tables_equal_the_model(self) -> None:
        live = all_table_rows(self.conn)
        assert live == model_rows(self.model)

    @invariant()
    def refunds_stay_within_what_was_paid(self) -> None:
        over = self.conn.execute(
            "SELECT count(*) FROM purchases WHERE refunded_amount_cents > amount_paid_cents"
        ).fetchone()
        assert over == (0,)
        for intent, total in self.refunded.items():
            assert total <= self.split[intent][0]

    @invariant()
    def revenue_totals_equal_the_sums(self) -> None:
        report = revenue(self.conn, self.settings.schema, RevenueQuery())
        got = {row.currency: {name: getattr(row, name) for name in MONEY} for row in report.totals}
        want = {
            currency: {
                "purchases": t["purchases"],
                "gross_cents": t["gross_cents"],
                "refunds": t["refunds"],
                "refunded_cents": t["refunded_cents"],
                "net_cents": t["gross_cents"] - t["refunded_cents"],
                "platform_fee_cents": t["platform_fee_cents"],
                "organization_fee_cents": t["organization_fee_cents"],
                "creator_payout_cents": t["creator_payout_cents"],
            }
            for currency, t in self.expected.items()
        }
        assert got == want


def test_the_ledger_behaves_like_the_model_step_by_step(schema_pool: SchemaPool) -> None:
    run_state_machine_as_test(
        lambda: LedgerMachine(schema_pool),
        settings=hypothesis_settings(hypothesis_settings(), stateful_step_count=30),
    )
