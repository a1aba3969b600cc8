"""The row types of the projected tables, for ``from ledger.rows import Purchase``."""

from projections.rows import (
    Content,
    ContentAccess,
    NewContent,
    NewContentAccess,
    NewOrganization,
    NewPurchase,
    NewUser,
    NewVideoPlayback,
    Organization,
    Purchase,
    User,
    VideoPlayback,
)

__all__ = [
    "Content",
    "ContentAccess",
    "NewContent",
    "NewContentAccess",
    "NewOrganization",
    "NewPurchase",
    "NewUser",
    "NewVideoPlayback",
    "Organization",
    "Purchase",
    "User",
    "VideoPlayback",
]
