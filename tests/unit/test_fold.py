"""The in-memory interpreter of row changes (the rebuild's) on its own."""

from __future__ import annotations

from projections.changes import Delete, Update, Upsert
from projections.fold import Fold


def test_upsert_insert_then_update_keeps_created_at() -> None:
    fold = Fold(["purchases"])
    fold.apply(
        [
            Upsert(
                "purchases",
                ("stripe_payment_intent_id",),
                {
                    "id": "a",
                    "stripe_payment_intent_id": "pi",
                    "status": "pending",
                    "customer_id": "u",
                },
                "t1",
            )
        ]
    )
    fold.apply(
        [
            Upsert(
                "purchases",
                ("stripe_payment_intent_id",),
                {
                    "id": "a",
                    "stripe_payment_intent_id": "pi",
                    "status": "completed",
                    "customer_id": "u",
                },
                "t2",
            )
        ]
    )
    assert fold.rows["purchases"] == {
        ("pi",): {
            "id": "a",
            "stripe_payment_intent_id": "pi",
            "status": "completed",
            "customer_id": "u",
            "created_at": "t1",
            "updated_at": "t2",
        }
    }


def test_update_without_time_leaves_updated_at_and_cascading_deletes_use_indexes() -> None:
    fold = Fold(["content", "purchases"])
    fold.apply(
        [
            Upsert("content", ("id",), {"id": "c1", "creator_id": "u"}, "t1"),
            Upsert("content", ("id",), {"id": "c2", "creator_id": "v"}, "t1"),
            Upsert(
                "purchases",
                ("stripe_payment_intent_id",),
                {"stripe_payment_intent_id": "p1", "customer_id": "u"},
                "t1",
            ),
            Upsert(
                "purchases",
                ("stripe_payment_intent_id",),
                {"stripe_payment_intent_id": "p2", "customer_id": "v"},
                "t1",
            ),
            Update("content", {"creator_id": "u"}, {"creator_id": None}, None),
            Delete("purchases", {"customer_id": "u"}),
            Update("purchases", {"stripe_payment_intent_id": "p9"}, {"status": "x"}, "t3"),
        ]
    )
    assert fold.rows["content"][("c1",)] == {
        "id": "c1",
        "creator_id": None,
        "created_at": "t1",
        "updated_at": "t1",
    }
    assert list(fold.rows["purchases"]) == [("p2",)]
    fold.apply([Update("content", {"creator_id": None}, {"title": "x"}, "t4")])
    assert fold.rows["content"][("c1",)]["title"] == "x"


def test_changes_to_other_tables_are_ignored() -> None:
    fold = Fold(["users"])
    fold.apply(
        [Upsert("purchases", ("stripe_payment_intent_id",), {"stripe_payment_intent_id": "p"}, "t")]
    )
    assert fold.rows == {"users": {}}
