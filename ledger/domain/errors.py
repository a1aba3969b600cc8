"""Rejections. Each carries the contract's error code, so every layer above the
domain (API, CLI) answers with the same code, message and field."""

from __future__ import annotations


class Rejected(Exception):
    """A command broke a rule; nothing is written."""

    code = "rejected"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def as_dict(self) -> dict[str, str]:
        error = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return error


class ValidationFailed(Rejected):
    code = "validation_error"


class NotFound(Rejected):
    code = "not_found"


class Conflict(Rejected):
    code = "conflict"


class InvalidState(Rejected):
    code = "invalid_state"


class NoAccess(Rejected):
    code = "no_access"


class Duplicate(Exception):
    """The command was already applied; nothing to write (answered ``duplicate``).

    Not a ``Rejected``: a redelivery is answered, not refused. The aggregates raise it
    where they recognise their own repetition, so it lives beside the rejections.
    """
