"""Gross, refunds and net per period, one panel per currency (matplotlib, optional)."""

from __future__ import annotations

from pathlib import Path

from ledger.audit.revenue import RevenueReport
from ledger.config import ConfigurationError


def draw(report: RevenueReport, path: Path, title: str = "Revenue") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigurationError("--chart needs matplotlib: pip install 'ledger[chart]'") from None
    currencies = sorted({r.currency for r in report.rows})
    if not currencies:
        raise ConfigurationError("nothing to chart: no revenue in the selected range")
    figure, axes = plt.subplots(
        len(currencies), 1, figsize=(11, 3.6 * len(currencies)), squeeze=False
    )
    for axis, currency in zip(axes[:, 0], currencies, strict=True):
        rows = [r for r in report.rows if r.currency == currency]
        labels = [r.period or r.group or "all" for r in rows]
        positions = list(range(len(rows)))
        gross = [r.gross_cents / 100 for r in rows]
        refunds = [-r.refunded_cents / 100 for r in rows]
        net = [r.net_cents / 100 for r in rows]
        axis.bar(positions, gross, color="#4C78A8", label="gross")
        axis.bar(positions, refunds, color="#E45756", label="refunds")
        axis.plot(positions, net, color="#222222", marker="o", linewidth=2, label="net")
        axis.axhline(0, color="#888888", linewidth=0.8)
        axis.set_xticks(positions, labels, rotation=45 if len(labels) > 8 else 0, ha="right")
        axis.set_ylabel(f"{currency.upper()} (major units)")
        axis.set_title(f"{title}: {currency.upper()}")
        axis.grid(axis="y", alpha=0.3)
        axis.legend(loc="best", framealpha=0.9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
