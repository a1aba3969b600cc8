"""Row types of the projected tables (the review's "type exports").

``X`` is a row as read (every column); ``NewX`` is a row as inserted, where the
columns with a database default may be left out (like Drizzle's ``$inferInsert``).
A test compares every model with the table read from pg_catalog, so they cannot
drift from the schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

AccessType = Literal["purchased", "subscription", "complimentary", "preview"]
PurchaseStatus = Literal["pending", "completed", "refunded", "failed"]
Cents = Annotated[int, Field(ge=0, le=2_147_483_647)]


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Organization(_Row):
    id: UUID
    name: Annotated[str, Field(min_length=1, max_length=255)]
    created_at: datetime
    updated_at: datetime


class NewOrganization(_Row):
    id: UUID | None = None
    name: Annotated[str, Field(min_length=1, max_length=255)]
    created_at: datetime | None = None
    updated_at: datetime | None = None


class User(_Row):
    id: Annotated[str, Field(min_length=1, max_length=255)]
    created_at: datetime
    updated_at: datetime


class NewUser(_Row):
    id: Annotated[str, Field(min_length=1, max_length=255)]
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Content(_Row):
    id: UUID
    organization_id: UUID
    creator_id: str | None
    title: Annotated[str, Field(min_length=1, max_length=500)]
    created_at: datetime
    updated_at: datetime


class NewContent(_Row):
    id: UUID | None = None
    organization_id: UUID
    creator_id: str | None = None
    title: Annotated[str, Field(min_length=1, max_length=500)]
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ContentAccess(_Row):
    id: UUID
    user_id: str
    content_id: UUID
    organization_id: UUID
    access_type: AccessType
    granted_at: datetime
    expires_at: datetime | None
    last_accessed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class NewContentAccess(_Row):
    id: UUID | None = None
    user_id: str
    content_id: UUID
    organization_id: UUID
    access_type: AccessType
    granted_at: datetime | None = None
    expires_at: datetime | None = None
    last_accessed_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Purchase(_Row):
    id: UUID
    customer_id: str
    content_id: UUID
    organization_id: UUID
    stripe_payment_intent_id: Annotated[str, Field(min_length=1, max_length=255)]
    status: PurchaseStatus
    amount_paid_cents: Annotated[int, Field(ge=1, le=2_147_483_647)]
    currency: Annotated[str, Field(pattern=r"^[a-z]{3}$")]
    revenue_split_config_id: UUID | None
    platform_fee_cents: Cents | None
    organization_fee_cents: Cents | None
    creator_payout_cents: Cents | None
    refunded_amount_cents: Cents
    created_at: datetime
    updated_at: datetime


class NewPurchase(_Row):
    id: UUID | None = None
    customer_id: str
    content_id: UUID
    organization_id: UUID
    stripe_payment_intent_id: Annotated[str, Field(min_length=1, max_length=255)]
    status: PurchaseStatus
    amount_paid_cents: Annotated[int, Field(ge=1, le=2_147_483_647)]
    currency: Annotated[str, Field(pattern=r"^[a-z]{3}$")] | None = None
    revenue_split_config_id: UUID | None = None
    platform_fee_cents: Cents | None = None
    organization_fee_cents: Cents | None = None
    creator_payout_cents: Cents | None = None
    refunded_amount_cents: Cents | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class VideoPlayback(_Row):
    id: UUID
    user_id: str
    content_id: UUID
    organization_id: UUID  # its content's (migration 0026)
    position_seconds: Annotated[int, Field(ge=0)]
    duration_seconds: Annotated[int, Field(ge=1)]
    completed: bool
    updated_at: datetime
    created_at: datetime


class NewVideoPlayback(_Row):
    id: UUID | None = None
    user_id: str
    content_id: UUID
    organization_id: UUID
    position_seconds: Annotated[int, Field(ge=0)] | None = None
    duration_seconds: Annotated[int, Field(ge=1)]
    completed: bool | None = None
    updated_at: datetime | None = None
    created_at: datetime | None = None


ROW_TYPES: dict[str, tuple[type[_Row], type[_Row]]] = {
    "organizations": (Organization, NewOrganization),
    "users": (User, NewUser),
    "content": (Content, NewContent),
    "content_access": (ContentAccess, NewContentAccess),
    "purchases": (Purchase, NewPurchase),
    "video_playback": (VideoPlayback, NewVideoPlayback),
}
