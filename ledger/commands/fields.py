"""The commands' field types, each with its rule.

Strict means: no coercion ("1000" is not 1000, 1000.0 is not 1000, true is not 1),
bounds from the contract, active ISO 4217 currencies, timestamps with an offset inside
the business window, no control characters in text, ids without surrounding whitespace
or format characters.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field

from ledger.commands.currencies import ACTIVE
from ledger.domain import clock

MAX_INT = 2_147_483_647


# C0 controls (newline, ESC, NUL...), DEL and C1 controls; lone surrogates cannot be stored
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable(text: str) -> str:
    control = _CONTROL.search(text)
    if control is not None:
        raise ValueError(
            f"must not contain control characters (U+{ord(control.group()):04X} at "
            f"character {control.start() + 1})"
        )
    if _SURROGATE.search(text) is not None:
        raise ValueError("must be valid Unicode (no lone surrogates)")
    return text


def _identifier(text: str) -> str:
    """Ids are compared exactly: " alice" would be another user than "alice", and an id
    holding an invisible or bidirectional format character (Unicode Cf: U+200B, U+202E)
    would look like another, or like nothing at all."""
    if not text.strip():
        raise ValueError("must not be blank")
    if text != text.strip():
        raise ValueError("must not begin or end with whitespace")
    if not text.isprintable():  # C: the rare id that is not is looked at closely
        for at, char in enumerate(text, start=1):
            if unicodedata.category(char) == "Cf":
                raise ValueError(
                    f"must not contain format characters (U+{ord(char):04X} at character {at})"
                )
    return text


def check_id(text: str) -> str:
    """An id (a user's, a payment intent's...) by the rules of a command's id field:
    1 to 255 characters, no control or format character, not blank, no surrounding
    whitespace; ``ValueError`` says which rule it breaks."""
    if not 1 <= len(text) <= 255:
        raise ValueError("must be 1 to 255 characters")
    return _identifier(_storable(text))


def _currency(code: str) -> str:
    if code.upper() not in ACTIVE:
        raise ValueError(
            f"{code!r} is not an active ISO 4217 currency (funds, metals, XTS and XXX are not)"
        )
    return code.lower()


def _business_time(moment: datetime) -> datetime:
    if not clock.within_window(moment):
        raise ValueError(f"{moment.isoformat()} lies outside the business window, {clock.WINDOW}")
    return moment


Id = Annotated[
    str,
    Field(min_length=1, max_length=255),
    AfterValidator(_storable),
    AfterValidator(_identifier),
]
Text255 = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_storable)]
Text500 = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_storable)]
Text1000 = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_storable)]
Amount = Annotated[int, Field(ge=1, le=MAX_INT)]
Fee = Annotated[int, Field(ge=0, le=MAX_INT)]
Seconds = Annotated[int, Field(ge=0, le=MAX_INT)]
Duration = Annotated[int, Field(ge=1, le=MAX_INT)]
Currency = Annotated[str, Field(min_length=3, max_length=3), AfterValidator(_currency)]
BusinessTime = Annotated[AwareDatetime, AfterValidator(_business_time)]
