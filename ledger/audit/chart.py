"""Gross, refunds and net per period as a picture: one panel per currency.

matplotlib is an optional extra (``pip install 'purchase-ledger[chart]'``), imported only when a
chart is asked for. Amounts are drawn in major units of each currency (cents / 100,
yen as they are), periods without activity are drawn as zero so the time axis is true.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ledger.audit.revenue import RevenueReport, RevenueRow
from ledger.errors import ConfigurationError

# ISO 4217 minor units where they are not 2 (funds and metals without one: 0)
_ZERO_DECIMALS = frozenset(
    (
        *("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI"),
        *("VND", "VUV", "XAF", "XOF", "XPF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR"),
        *("XPD", "XPT", "XSU", "XTS", "XUA", "XXX"),
    )
)
_EXPONENTS = {
    **dict.fromkeys(_ZERO_DECIMALS, 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
GROSS, REFUNDS, NET = "#4C78A8", "#E45756", "#222222"
MAX_PERIODS = 400


def minor_units(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def periods_between(first: str, last: str) -> list[str]:
    """Every month (``YYYY-MM``) or day (``YYYY-MM-DD``) from ``first`` to ``last``."""
    if len(first) == 7:
        year, month = int(first[:4]), int(first[5:])
        out = []
        while f"{year:04d}-{month:02d}" <= last:
            out.append(f"{year:04d}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return out
    day, end = date.fromisoformat(first), date.fromisoformat(last)
    return [(day + timedelta(days=n)).isoformat() for n in range((end - day).days + 1)]


def period_count(first: str, last: str) -> int:
    """How many months or days ``periods_between`` would list, without listing them."""
    if len(first) == 7:
        return (int(last[:4]) - int(first[:4])) * 12 + int(last[5:]) - int(first[5:]) + 1
    return (date.fromisoformat(last) - date.fromisoformat(first)).days + 1


def check_drawable(report: RevenueReport) -> None:
    """A chart draws at most ``MAX_PERIODS`` periods: a picture of more is unreadable
    (and drawing a century of days took minutes and gigabytes). Checked before drawing,
    with the ways out: a narrower range, or months instead of days."""
    periods = [r.period for r in report.rows if r.period is not None]
    if not periods:
        return
    first, last = min(periods), max(periods)
    count = period_count(first, last)
    if count > MAX_PERIODS:
        unit = "months" if len(first) == 7 else "days"
        coarser = "" if unit == "months" else ", or --group-by month"
        raise ConfigurationError(
            f"--chart: the selection spans {count} {unit} ({first} to {last}); a chart draws "
            f"at most {MAX_PERIODS}: narrow it with --from/--to{coarser} (the table, JSON and "
            "CSV outputs have no such limit)"
        )


def axis_periods(rows: list[RevenueRow]) -> list[str]:
    """Every period from the first to the last with activity, in any currency."""
    periods = [r.period for r in rows if r.period is not None]
    return periods_between(min(periods), max(periods)) if periods else []


def series(rows: list[RevenueRow], currency: str, periods: list[str]) -> list[RevenueRow | None]:
    """One currency's rows along ``periods`` (None where nothing happened)."""
    mine = {r.period: r for r in rows if r.currency == currency}
    return [mine.get(period) for period in periods]


def draw(report: RevenueReport, path: Path, title: str, subtitle: str = "") -> None:
    """Writes the chart of ``report`` (rows per month or day) to ``path`` as PNG."""
    check_drawable(report)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        raise ConfigurationError(
            "--chart needs matplotlib, an optional extra: pip install 'purchase-ledger[chart]'"
        ) from None
    currencies = sorted({r.currency for r in report.rows})
    panels = max(1, len(currencies))
    header = 1.1  # inches above the panels: title, subtitle, legend
    height = header + 3.3 * panels
    figure, axes = plt.subplots(panels, 1, figsize=(11, height), squeeze=False)
    figure.text(
        0.5, 1 - 0.25 / height, title, ha="center", va="center", fontsize=14, fontweight="bold"
    )
    if subtitle:
        figure.text(
            0.5, 1 - 0.52 / height, subtitle, ha="center", va="center", fontsize=9, color="#555555"
        )
    if not currencies:
        axis = axes[0, 0]
        axis.text(
            0.5,
            0.5,
            "no completed purchase or refund in this range",
            ha="center",
            va="center",
            fontsize=12,
            color="#555555",
            transform=axis.transAxes,
        )
        axis.set_axis_off()
    periods = axis_periods(report.rows)
    for axis, currency in zip(axes[:, 0], currencies, strict=False):
        _panel(axis, report, currency, periods, FuncFormatter)
    if currencies:
        handles, labels = axes[0, 0].get_legend_handles_labels()
        figure.legend(
            handles,
            labels,
            loc="center",
            ncol=3,
            frameon=False,
            fontsize=9,
            bbox_to_anchor=(0.5, 1 - 0.82 / height),
        )
    figure.tight_layout(rect=(0, 0, 1, 1 - header / height))
    try:
        figure.savefig(path, dpi=110)
    except OSError as error:
        raise ConfigurationError(
            f"--chart: cannot write {path}: {error.strerror or error}"
        ) from None
    finally:
        plt.close(figure)


def _panel(
    axis: Any, report: RevenueReport, currency: str, labels: list[str], formatter: Any
) -> None:
    rows = series(report.rows, currency, labels)
    scale = 10 ** minor_units(currency)
    positions = list(range(len(labels)))
    gross = [(r.gross_cents if r else 0) / scale for r in rows]
    refunds = [-(r.refunded_cents if r else 0) / scale for r in rows]
    net = [(r.net_cents if r else 0) / scale for r in rows]
    axis.bar(
        positions, gross, color=GROSS, width=0.7, label="gross: purchases completed in the period"
    )
    axis.bar(
        positions, refunds, color=REFUNDS, width=0.7, label="refunds in the period (below zero)"
    )
    axis.plot(
        positions,
        net,
        color=NET,
        marker="o",
        markersize=4,
        linewidth=2,
        label="net = gross - refunds",
    )
    axis.axhline(0, color="#888888", linewidth=0.8)
    step = max(1, len(labels) // 16)
    axis.set_xticks(
        positions[::step],
        labels[::step],
        rotation=45 if step > 1 or len(labels) > 8 else 0,
        ha="right" if step > 1 or len(labels) > 8 else "center",
    )
    axis.set_xlim(-0.6, len(labels) - 0.4)
    axis.yaxis.set_major_formatter(formatter(lambda value, _: f"{value:,.0f}"))
    axis.set_ylabel(f"{currency.upper()} (major units)")
    total = next((t for t in report.totals if t.currency == currency), None)
    summary = ""
    if total is not None:
        digits = minor_units(currency)
        summary = (
            f"   gross {total.gross_cents / scale:,.{digits}f}, refunds "
            f"{total.refunded_cents / scale:,.{digits}f}, net {total.net_cents / scale:,.{digits}f}"
        )
    axis.set_title(f"{currency.upper()}{summary}", loc="left", fontsize=11)
    axis.grid(axis="y", alpha=0.3)
