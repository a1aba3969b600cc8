"""An independent model of the contract: expected answers and expected table rows.

Written from ../shared/CONTRACT.md and docs/events.md, not from the service: it
shares no code with ledger.service or projections (only the uuid5 id derivation,
which is part of what ids mean).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.domain import ids
from tests.property.model_rules import (
    Dup,
    PurchaseRules,
    Reject,
    Row,
    _before,
    _fp,
    _identity,
    _time,
)


@dataclass
class Model(PurchaseRules):
    organizations: dict[str, Row] = field(default_factory=dict)
    users: dict[str, Row] = field(default_factory=dict)
    deleted_users: set[str] = field(default_factory=set)
    content: dict[str, Row] = field(default_factory=dict)
    content_meta: dict[str, dict[str, Any]] = field(default_factory=dict)  # incl. deleted
    purchases: dict[str, Row] = field(default_factory=dict)  # rows (may be gone from table)
    purchase_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    refund_keys: dict[str, str] = field(default_factory=dict)
    idempotency: dict[str, str] = field(default_factory=dict)
    access: dict[tuple[str, str], Row] = field(default_factory=dict)
    access_meta: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    playback: dict[tuple[str, str], Row] = field(default_factory=dict)
    playback_seen: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    # --- answers ---------------------------------------------------------------

    def _derived(self, command: dict[str, Any]) -> dict[str, Any]:
        """Optional fields the ledger derives from what it recorded before the command."""
        if command["type"] == "purchase.complete":
            meta = self.content_meta.get(command["content_id"])
            return {"organization_id": meta["org"]} if meta else {}
        if command["type"] == "purchase.fail":
            meta = self.purchase_meta.get(command["stripe_payment_intent_id"])
            if meta is not None and "start" in meta["fps"]:
                return {
                    "customer_id": meta["customer_id"],
                    "content_id": meta["content_id"],
                    "amount_paid_cents": meta["amount"],
                    "currency": meta["currency"],
                }
        return {}

    def _canonical(self, command: dict[str, Any]) -> str:
        return _fp(command, self._derived(command))

    def apply(self, command: dict[str, Any]) -> str:
        """'accepted', 'duplicate' or 'rejected:<code>' (the command is well-formed)."""
        key = command.get("idempotency_key")
        fingerprint = self._canonical(command)
        if key is not None and key in self.idempotency:
            return "duplicate" if self.idempotency[key] == fingerprint else "rejected:conflict"
        try:
            getattr(self, "_" + command["type"].replace(".", "_"))(command, command["occurred_at"])
        except Dup:
            return "duplicate"
        except Reject as rejection:
            return f"rejected:{rejection.code}"
        if key is not None:
            self.idempotency[key] = fingerprint
        return "accepted"

    def _live_user(self, user_id: str) -> None:
        if user_id not in self.users:
            raise Reject("not_found")

    def _live_content(self, content_id: str) -> Row:
        if content_id not in self.content:
            raise Reject("not_found")
        return self.content[content_id]

    def _organization_register(self, c: dict[str, Any], at: str) -> None:
        oid = c["organization_id"]
        if oid in self.organizations:
            raise Dup if self.organizations[oid]["name"] == c["name"] else Reject("conflict")
        self.organizations[oid] = {"id": oid, "name": c["name"], "created_at": at, "updated_at": at}

    def _user_register(self, c: dict[str, Any], at: str) -> None:
        if c["user_id"] in self.deleted_users:
            raise Reject("invalid_state")
        if c["user_id"] in self.users:
            raise Dup
        self.users[c["user_id"]] = {"id": c["user_id"], "created_at": at, "updated_at": at}

    def _user_delete(self, c: dict[str, Any], at: str) -> None:
        u = c["user_id"]
        if u in self.deleted_users:
            raise Dup
        if u not in self.users:
            raise Reject("not_found")
        del self.users[u]
        self.deleted_users.add(u)
        for row in self.content.values():
            if row["creator_id"] == u:
                row["creator_id"] = None
        for k in [k for k in self.access if k[0] == u]:
            del self.access[k]
        for k in [k for k in self.playback if k[0] == u]:
            del self.playback[k]
        for pi in [pi for pi, row in self.purchases.items() if row["customer_id"] == u]:
            del self.purchases[pi]

    def _content_publish(self, c: dict[str, Any], at: str) -> None:
        cid = c["content_id"]
        if cid in self.content_meta:
            meta = self.content_meta[cid]
            if meta["deleted"]:
                raise Reject("invalid_state")
            raise Dup if meta["fp"] == _fp(c) else Reject("conflict")
        if c["organization_id"] not in self.organizations:
            raise Reject("not_found")
        self._live_user(c["creator_id"])
        self.content_meta[cid] = {
            "deleted": False,
            "fp": _fp(c),
            "creator": c["creator_id"],
            "org": c["organization_id"],
        }
        self.content[cid] = {
            "id": cid,
            "organization_id": c["organization_id"],
            "creator_id": c["creator_id"],
            "title": c["title"],
            "created_at": at,
            "updated_at": at,
        }

    def _content_delete(self, c: dict[str, Any], at: str) -> None:
        cid = c["content_id"]
        if cid not in self.content_meta:
            raise Reject("not_found")
        if self.content_meta[cid]["deleted"]:
            raise Dup
        if any(row["content_id"] == cid for row in self.purchases.values()):
            raise Reject("invalid_state")
        self.content_meta[cid]["deleted"] = True
        del self.content[cid]
        for k in [k for k in self.access if k[1] == cid]:
            del self.access[k]
        for k in [k for k in self.playback if k[1] == cid]:
            del self.playback[k]

    def _touches(self, key: tuple[str, str], at: str) -> bool:
        """Is a grant dated at or after the present row's latest change: the latest grant
        or revoke, or the heartbeat the playback row shows (which stamped the row)?"""
        if key not in self.access:
            return True
        changes = [self.access_meta[key].get("changed_at")]
        changes.append(self.playback.get(key, {}).get("updated_at"))
        return not any(_before(at, change) for change in changes)

    @staticmethod
    def _changed(meta: dict[str, Any], at: str) -> None:
        """The latest grant or revoke of an access, row or not."""
        if meta.get("changed_at") is None or _time(at) > _time(meta["changed_at"]):
            meta["changed_at"] = at

    def _grant_row(
        self,
        key: tuple[str, str],
        org: str,
        kind: str,
        expires: str | None,
        at: str,
        touch: bool = True,
    ) -> None:
        self._changed(self.access_meta[key], at)
        row = self.access.get(key)
        if row is None:
            row = self.access[key] = {
                "id": str(ids.access_id(*key)),
                "user_id": key[0],
                "content_id": key[1],
                "last_accessed_at": None,
                "created_at": at,
                "updated_at": at,
            }
        row.update(organization_id=org, access_type=kind, granted_at=at, expires_at=expires)
        if touch:
            row["updated_at"] = at

    def _access_grant(self, c: dict[str, Any], at: str) -> None:
        self._live_user(c["user_id"])
        content = self._live_content(c["content_id"])
        key = (c["user_id"], c["content_id"])
        row = self.access.get(key)
        meta = self.access_meta.setdefault(key, {"purchases": []})
        if _identity(c) in meta.setdefault("seen", set()):
            raise Dup
        if row is not None and row["access_type"] == "purchased":
            raise Reject("invalid_state")
        if _before(at, meta.get("changed_at")):  # older than the latest grant or revoke
            raise Reject("invalid_state")
        meta["purchases"] = []
        meta["seen"].add(_identity(c))
        touch = self._touches(key, at)
        org, kind = content["organization_id"], c["access_type"]
        self._grant_row(key, org, kind, c.get("expires_at"), at, touch=touch)

    def _access_revoke(self, c: dict[str, Any], at: str) -> None:
        self._live_user(c["user_id"])
        self._live_content(c["content_id"])
        key = (c["user_id"], c["content_id"])
        if key not in self.access_meta:
            raise Reject("not_found")
        meta = self.access_meta[key]
        if _identity(c) in meta.setdefault("seen", set()) or key not in self.access:
            raise Dup
        if _before(at, meta.get("changed_at")):
            raise Reject("invalid_state")
        del self.access[key]
        meta["purchases"] = []
        meta["seen"].add(_identity(c))
        self._changed(meta, at)

    def _playback_progress(self, c: dict[str, Any], at: str) -> None:
        self._live_user(c["user_id"])
        self._live_content(c["content_id"])
        key = (c["user_id"], c["content_id"])
        seen = self.playback_seen.setdefault(key, set())
        if _identity(c) in seen:
            raise Dup  # recorded already, whatever the access is now
        access = self.access.get(key)
        if (
            access is None
            or _before(at, access["created_at"])  # the access began after this heartbeat
            or (access["expires_at"] is not None and _time(access["expires_at"]) <= _time(at))
        ):
            raise Reject("no_access")
        row = self.playback.get(key)
        position, duration = c["position_seconds"], c["duration_seconds"]
        seen.add(_identity(c))
        completed = (row is not None and row["completed"]) or position * 100 >= duration * 95
        if row is None:
            row = self.playback[key] = {
                "id": str(ids.playback_id(*key)),
                "user_id": key[0],
                "content_id": key[1],
                "organization_id": self.content[key[1]]["organization_id"],  # 0026
                "created_at": at,
                "updated_at": at,
            }
        row["completed"] = completed
        if not _before(at, row["updated_at"]):  # the newest heartbeat: the row shows it
            row.update(position_seconds=position, duration_seconds=duration, updated_at=at)
            access["last_accessed_at"] = at
            if not _before(at, self.access_meta[key].get("changed_at")):
                access["updated_at"] = at  # unless a later grant moved the row on

    # --- tables ------------------------------------------------------------------

    def tables(self) -> dict[str, list[Row]]:
        def ordered(rows: Any) -> list[Row]:
            return sorted((dict(r) for r in rows), key=lambda r: str(r["id"]))

        return {
            "organizations": ordered(self.organizations.values()),
            "users": ordered(self.users.values()),
            "content": ordered(self.content.values()),
            "content_access": ordered(self.access.values()),
            "purchases": ordered(self.purchases.values()),
            "video_playback": ordered(self.playback.values()),
        }
