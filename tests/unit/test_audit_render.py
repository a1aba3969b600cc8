"""The report's three formats and its chart, from a hand-made report (no database)."""

from __future__ import annotations

import builtins
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from ledger.audit import render
from ledger.audit.chart import draw
from ledger.audit.revenue import COLUMNS, RevenueReport, RevenueRow
from ledger.config import ConfigurationError


def row(period: str | None, currency: str, gross: int, refunded: int) -> RevenueRow:
    return RevenueRow(
        period, None, currency, 1, gross, 1 if refunded else 0, refunded, gross - refunded,
        gross // 10, gross // 5, gross - refunded - gross // 10 - gross // 5,
    )  # fmt: skip


REPORT = RevenueReport(
    rows=[row("2026-01", "eur", 5000, 0), row("2026-01", "usd", 1999, 500),
          row("2026-03", "usd", 123456789, 0)],
    totals=[row(None, "eur", 5000, 0), row(None, "usd", 123458788, 500)],
)  # fmt: skip


def test_json_is_the_contract_shape() -> None:
    document = json.loads(render.as_json(REPORT))
    assert set(document) == {"rows", "totals"}
    assert list(document["rows"][0]) == list(COLUMNS)
    assert document["rows"][1] == {
        "period": "2026-01",
        "group": None,
        "currency": "usd",
        "purchases": 1,
        "gross_cents": 1999,
        "refunds": 1,
        "refunded_cents": 500,
        "net_cents": 1499,
        "platform_fee_cents": 199,
        "organization_fee_cents": 399,
        "creator_payout_cents": 901,
    }
    assert [t["currency"] for t in document["totals"]] == ["eur", "usd"]
    assert all(t["period"] is None and t["group"] is None for t in document["totals"])


def test_csv_has_a_header_and_the_rows() -> None:
    lines = list(csv.reader(io.StringIO(render.as_csv(REPORT))))
    assert lines[0] == list(COLUMNS)
    assert lines[1] == ["2026-01", "", "eur", "1", "5000", "0", "0", "5000", "500", "1000", "3500"]
    assert len(lines) == 1 + len(REPORT.rows)


def test_the_table_is_aligned_with_a_total_per_currency() -> None:
    lines = render.as_table(REPORT).splitlines()
    assert lines[0].split() == list(COLUMNS)
    # numbers are right-aligned under their headers: every line ends in the same column
    assert len({len(line) for line in lines}) == 1
    totals = [line for line in lines if line.startswith("total")]
    assert [t.split()[1] for t in totals] == ["eur", "usd"]
    assert "123458788" in totals[1]


def test_an_empty_table_says_so() -> None:
    assert "no completed purchase or refund" in render.as_table(RevenueReport([], []))
    assert render.as_csv(RevenueReport([], [])).splitlines() == [",".join(COLUMNS)]


def test_the_chart_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "revenue.png"
    draw(REPORT, path, "Revenue by month", "all organizations")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    empty = tmp_path / "empty.png"
    draw(RevenueReport([], []), empty, "Revenue by month")
    assert empty.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_chart_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def refuse(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(ConfigurationError, match=r"pip install 'purchase-ledger\[chart\]'"):
        draw(REPORT, tmp_path / "x.png", "Revenue")


def test_the_table_escapes_what_a_terminal_would_not_print() -> None:
    """Values stored before control characters were refused (a creator id with an ESC
    sequence, a newline, a right-to-left override) must not drive the terminal or split
    a row: the table shows them escaped, one line per row; JSON and CSV keep them."""
    hostile = "cr\x1b[2J\nat\u202eor\\"
    grouped = RevenueRow(None, hostile, "usd", 1, 100, 0, 0, 100, 10, 20, 70)
    report = RevenueReport(rows=[grouped], totals=[row(None, "usd", 100, 0)])
    table = render.as_table(report)
    assert "\x1b" not in table and "\u202e" not in table
    assert "cr\\x1b[2J\\nat\\u202eor\\\\" in table
    assert len(table.splitlines()) == 5  # header, rule, the row, rule, total
    assert all(line.isprintable() for line in table.splitlines())
    assert json.loads(render.as_json(report))["rows"][0]["group"] == hostile
    assert next(csv.DictReader(io.StringIO(render.as_csv(report))))["group"] == hostile


@pytest.mark.parametrize(
    "text", ["plain", "Zoë 🎬 café", "tab\there", "nul\x00", "c1\x85", "del\x7f", "sep\u2028"]
)
def test_printable_output_never_holds_an_unprintable_character(text: str) -> None:
    shown = render.printable(text)
    assert shown.isprintable()
    assert shown == text if text.isprintable() else shown != text


def test_a_chart_of_more_than_400_periods_is_refused_with_the_ways_out(tmp_path: Path) -> None:
    days = RevenueReport(
        rows=[row("2026-01-01", "usd", 100, 0), row("2027-02-05", "usd", 100, 0)],
        totals=[row(None, "usd", 200, 0)],
    )
    with pytest.raises(ConfigurationError, match=r"401 days .* --from/--to, or --group-by month"):
        draw(days, tmp_path / "days.png", "t")
    months = RevenueReport(
        rows=[row("2000-01", "usd", 100, 0), row("2099-12", "usd", 100, 0)],
        totals=[row(None, "usd", 200, 0)],
    )
    with pytest.raises(ConfigurationError, match=r"1200 months .* --from/--to \("):
        draw(months, tmp_path / "months.png", "t")
    assert not list(tmp_path.iterdir())
    # 400 periods are drawn
    edge = RevenueReport(
        rows=[row("2026-01-01", "usd", 100, 0), row("2027-02-04", "usd", 100, 0)],
        totals=[row(None, "usd", 200, 0)],
    )
    draw(edge, tmp_path / "edge.png", "t")
    assert (tmp_path / "edge.png").stat().st_size > 0
