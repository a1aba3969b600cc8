"""What the ledger answers for each command."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ledger.domain.errors import Rejected

Status = Literal["accepted", "duplicate", "rejected", "rolled_back"]


@dataclass(frozen=True)
class Result:
    """``accepted`` with the log position of the command's last event, ``duplicate``,
    ``rejected`` with its error, or (``--atomic`` only) ``rolled_back``: the line was
    fine but another line was rejected, so nothing was written."""

    status: Status
    position: int | None = None
    error: Rejected | None = None
    # an accepted ``user.erase`` of a person whose older events still name them in the
    # clear: how many, the first positions, where to list them all (docs/privacy.md)
    older_events: Mapping[str, Any] | None = None

    def as_dict(self, line: int | None = None) -> dict[str, Any]:
        answer: dict[str, Any] = {} if line is None else {"line": line}
        answer["status"] = self.status
        if self.position is not None:
            answer["position"] = self.position
        if self.error is not None:
            answer["error"] = self.error.as_dict()
        if self.older_events is not None:
            answer["older_events"] = dict(self.older_events)
        return answer


DUPLICATE = Result("duplicate")
