"""The purchases' rules of the independent contract model (``tests/property/model.py``):
a purchase's start, completion, failure and refunds, and the helpers both halves share.
Written, like the model, from ../shared/CONTRACT.md and docs/events.md, not from the service."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ledger.domain import ids

Row = dict[str, Any]


def _identity(command: dict[str, Any]) -> str:
    return _fp(command) + "@" + command["occurred_at"]


def _fp(command: dict[str, Any], derived: dict[str, Any] | None = None) -> str:
    """The payload without time and key; fields equal to what the ledger derives
    (``derived``) are left out, so giving them or not is the same command."""
    payload = {k: v for k, v in command.items() if k not in ("occurred_at", "idempotency_key")}
    if "currency" in payload and isinstance(payload["currency"], str):
        payload["currency"] = payload["currency"].lower()
    for name, value in (derived or {}).items():
        if payload.get(name) == value:
            del payload[name]
    return json.dumps(payload, sort_keys=True)


def _time(at: str) -> datetime:
    return datetime.fromisoformat(at)


def _before(at: str, since: str | None) -> bool:
    """Business time runs forward: is ``at`` dated before ``since``?"""
    return since is not None and _time(at) < _time(since)


class Reject(Exception):
    def __init__(self, code: str) -> None:
        self.code = code


class Dup(Exception):
    pass


class PurchaseRules:
    """The purchases' half of ``Model`` (its fields are the dataclass's)."""

    def _purchase_row(self, pi: str, c: dict[str, Any], status: str, at: str, org: str) -> None:
        self.purchase_meta[pi]["changed_at"] = self.purchase_meta[pi]["row_at"] = at
        row = self.purchases.get(pi)
        values = {
            "id": str(ids.purchase_id(pi)),
            "customer_id": c["customer_id"],
            "content_id": c["content_id"],
            "organization_id": org,
            "stripe_payment_intent_id": pi,
            "status": status,
            "amount_paid_cents": c["amount_paid_cents"],
            "currency": c["currency"].lower(),
            "refunded_amount_cents": 0,
        }
        if row is None:
            row = {
                "revenue_split_config_id": None,
                "platform_fee_cents": None,
                "organization_fee_cents": None,
                "creator_payout_cents": None,
                "created_at": at,
            }
            self.purchases[pi] = row
        row.update(values)
        row["updated_at"] = at

    def _repeat(self, pi: str, kind: str, c: dict[str, Any]) -> dict[str, Any] | None:
        meta = self.purchase_meta.get(pi)
        if meta is not None and kind in meta["fps"]:
            raise Dup if meta["fps"][kind] == self._canonical(c) else Reject("conflict")
        return meta

    def _purchase_start(self, c: dict[str, Any], at: str) -> None:
        pi = c["stripe_payment_intent_id"]
        if self._repeat(pi, "start", c) is not None:
            raise Reject("invalid_state")
        self._live_user(c["customer_id"])
        content = self._live_content(c["content_id"])
        self.purchase_meta[pi] = {
            "status": "pending",
            "fps": {"start": _fp(c)},
            "customer_id": c["customer_id"],
            "content_id": c["content_id"],
            "amount": c["amount_paid_cents"],
            "currency": c["currency"].lower(),
            "org": content["organization_id"],
            "refunded": 0,
        }
        self._purchase_row(pi, c, "pending", at, content["organization_id"])

    def _same(self, meta: dict[str, Any], c: dict[str, Any]) -> None:
        if (
            meta["customer_id"] != c["customer_id"]
            or meta["content_id"] != c["content_id"]
            or meta["amount"] != c["amount_paid_cents"]
            or meta["currency"] != c["currency"].lower()
        ):
            raise Reject("invalid_state")

    def _purchase_complete(self, c: dict[str, Any], at: str) -> None:
        pi = c["stripe_payment_intent_id"]
        meta = self._repeat(pi, "complete", c)
        fingerprint = self._canonical(c)
        if meta is not None:
            if meta["status"] not in ("pending", "failed"):
                raise Reject("invalid_state")
            self._same(meta, c)
            if _before(at, meta["changed_at"]):  # dated before its start or failure
                raise Reject("invalid_state")
        self._live_user(c["customer_id"])
        content = self._live_content(c["content_id"])
        if c.get("organization_id") not in (None, content["organization_id"]):
            raise Reject("invalid_state")
        if meta is None:
            meta = self.purchase_meta[pi] = {
                "fps": {},
                "customer_id": c["customer_id"],
                "content_id": c["content_id"],
                "amount": c["amount_paid_cents"],
                "currency": c["currency"].lower(),
                "org": content["organization_id"],
                "refunded": 0,
            }
        meta["status"] = "completed"
        meta["completed_at"] = at
        meta["fps"]["complete"] = fingerprint
        meta["fees"] = (
            c["platform_fee_cents"],
            c["organization_fee_cents"],
            c["creator_payout_cents"],
        )
        self._purchase_row(pi, c, "completed", at, content["organization_id"])
        self.purchases[pi].update(
            platform_fee_cents=c["platform_fee_cents"],
            organization_fee_cents=c["organization_fee_cents"],
            creator_payout_cents=c["creator_payout_cents"],
            revenue_split_config_id=c.get("revenue_split_config_id"),
        )
        key = (c["customer_id"], c["content_id"])
        access = self.access_meta.setdefault(key, {"purchases": []})
        if pi not in access["purchases"]:
            access["purchases"].append(pi)
        # a late completion is still recorded; it does not move updated_at back
        touch = self._touches(key, at)
        self._grant_row(key, content["organization_id"], "purchased", None, at, touch=touch)

    def _purchase_fail(self, c: dict[str, Any], at: str) -> None:
        pi = c["stripe_payment_intent_id"]
        meta = self._repeat(pi, "fail", c)
        fingerprint = self._canonical(c)
        if meta is not None:
            if meta["status"] != "pending":
                raise Reject("invalid_state")
            given = {
                **{
                    "customer_id": meta["customer_id"],
                    "content_id": meta["content_id"],
                    "amount_paid_cents": meta["amount"],
                    "currency": meta["currency"],
                },
                **{
                    k: v
                    for k, v in c.items()
                    if k in ("customer_id", "content_id", "amount_paid_cents", "currency")
                },
            }
            self._same(meta, given)
            if _before(at, meta["changed_at"]):  # dated before its start
                raise Reject("invalid_state")
            self._live_user(meta["customer_id"])
            self._live_content(meta["content_id"])
            meta["status"] = "failed"
            meta["fps"]["fail"] = fingerprint
            self._purchase_row(pi, given, "failed", at, meta["org"])
            return
        if any(k not in c for k in ("customer_id", "content_id", "amount_paid_cents", "currency")):
            raise Reject("not_found")
        self._live_user(c["customer_id"])
        content = self._live_content(c["content_id"])
        self.purchase_meta[pi] = {
            "status": "failed",
            "fps": {"fail": fingerprint},
            "customer_id": c["customer_id"],
            "content_id": c["content_id"],
            "amount": c["amount_paid_cents"],
            "currency": c["currency"].lower(),
            "org": content["organization_id"],
            "refunded": 0,
        }
        self._purchase_row(pi, c, "failed", at, content["organization_id"])

    def _purchase_refund(self, c: dict[str, Any], at: str) -> None:
        if c["refund_id"] in self.refund_keys:
            raise Dup if self.refund_keys[c["refund_id"]] == _fp(c) else Reject("conflict")
        pi = c["stripe_payment_intent_id"]
        meta = self.purchase_meta.get(pi)
        if meta is None:
            raise Reject("not_found")
        if meta["status"] != "completed" or c["amount_cents"] > meta["amount"] - meta["refunded"]:
            raise Reject("invalid_state")
        if _before(at, meta["completed_at"]):
            raise Reject("invalid_state")
        self.refund_keys[c["refund_id"]] = _fp(c)
        meta["refunded"] += c["amount_cents"]
        full = meta["refunded"] == meta["amount"]
        meta["status"] = "refunded" if full else "completed"
        newest = not _before(at, meta["row_at"])  # refunds may arrive out of order
        if newest:
            meta["row_at"] = at
        if pi in self.purchases:
            self.purchases[pi].update(refunded_amount_cents=meta["refunded"], status=meta["status"])
            if newest:
                self.purchases[pi]["updated_at"] = at
        if full:
            key = (meta["customer_id"], meta["content_id"])
            access = self.access_meta.get(key)
            if access is not None and pi in access["purchases"]:
                access["purchases"].remove(pi)
                row = self.access.get(key)
                if (
                    row is not None
                    and row["access_type"] == "purchased"
                    and not access["purchases"]
                ):
                    del self.access[key]
                    self._changed(access, at)
