"""The revenue report as a table, JSON or CSV.

JSON is the contract's ``{"rows": [...], "totals": [...]}``; CSV is the rows with a header
of the same columns (empty cells for null); the table is for people: rows, then one
``total`` line per currency.
"""

from __future__ import annotations

import csv
import io

import orjson

from ledger.audit.revenue import COLUMNS, RevenueReport, RevenueRow


def as_json(report: RevenueReport) -> str:
    return orjson.dumps(report.as_dict()).decode()


def as_csv(report: RevenueReport) -> str:
    """The rows, one per line, with the contract's columns (totals are the JSON's)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in report.rows:
        values = row.as_dict()
        writer.writerow(["" if values[c] is None else values[c] for c in COLUMNS])
    return out.getvalue()


def printable(text: str) -> str:
    """``text`` with every character a terminal would not print as itself escaped
    (``\\x1b``, ``\\n``, ``\\u202e``...): a value stored before control characters were
    refused, or any other unprintable one, must not move the cursor, clear the screen
    or break the table's lines. A backslash is doubled, so the escape is unambiguous."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        else:
            escaped = repr(char)[1:-1]  # \n, \x1b, \u202e, \U0001f000
            out.append(escaped if escaped.startswith("\\") else f"\\u{ord(char):04x}")
    return "".join(out)


def as_table(report: RevenueReport) -> str:
    def cells(row: RevenueRow) -> list[str]:
        values = row.as_dict()
        return ["-" if values[c] is None else printable(str(values[c])) for c in COLUMNS]

    body = [cells(r) for r in report.rows]
    totals = [["total", "", *cells(r)[2:]] for r in report.totals]
    header = list(COLUMNS)
    widths = [max(len(x) for x in column) for column in zip(header, *body, *totals, strict=False)]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.ljust(w) if i < 3 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    if not body:
        return "\n".join(
            [line(header), rule, "(no completed purchase or refund in this selection)"]
        )
    parts = [line(header), rule, *(line(r) for r in body), rule, *(line(t) for t in totals)]
    return "\n".join(parts)
