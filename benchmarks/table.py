"""The printed figures, and issue 16's table built from them."""

from __future__ import annotations

from typing import Any

MEMORY_LIMIT_MB = 376
"""The rebuild's peak memory at a million events before the row budget bounded it
(docs/performance.md): bounded means staying under it at any size."""
CURVE_FLOOR = 0.5
"""Linear scale: the rebuild's rate at the largest log at least half its best rate."""


def figures(results: list[dict[str, Any]]) -> str:
    """Every figure of the run, one line each."""
    out = [f"{'benchmark':<58}{'ledger':>12}{'reference':>12}{'ratio':>8}{'target':>8}  unit"]
    for r in results:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        target = "-" if r["target"] is None else f"{r['target']:.2f}"
        reference = "-" if r["reference"] is None else f"{r['reference']:.1f}"
        if r["ledger"] is None:
            ledger = r.get("note", "-")
        else:
            ledger = f"{r['ledger']:.1f}" if r["ledger"] >= 100 else f"{r['ledger']:.3f}"
        out.append(f"{r['name']:<58}{ledger:>12}{reference:>12}{ratio:>8}{target:>8}  {r['unit']}")
        if r.get("ledger_client_cpu_ms") is not None:
            out.append(
                f"    CPU ms: {_cpu(r, 'ledger')} per command; {_cpu(r, 'raw')} per reference operation"
            )
    return "\n".join(out)


def _cpu(r: dict[str, Any], side: str) -> str:
    server, client = r.get(f"{side}_server_cpu_ms"), r.get(f"{side}_client_cpu_ms")
    if client is None:
        return "not measured"
    text = f"client {client:.3f}"
    return text + (f", server {server:.3f}" if server is not None else "")


def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "**no**")


def _ratio_row(r: dict[str, Any], figure: str, reference: str) -> dict[str, Any]:
    available = r["ratio"] is not None
    return {
        "key": r["key"],
        "benchmark": r["name"],
        "figure": figure if available else r.get("note", "-"),
        "reference": reference if available else "-",
        "ratio": r["ratio"],
        "target": f">= {r['target']}",
        "met": _met(r["ratio"] >= r["target"] if available else None),
        "value": r["ledger"],
    }


def issue16(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 16's rows, in its order, for the suites that ran."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if "key" in r:
            by_key.setdefault(r["key"], []).append(r)
    rows: list[dict[str, Any]] = []
    for key in ("threads_purchases", "threads_heartbeats"):
        for r in by_key.get(key, []):
            grouped = (
                f" (groups of {r['group_size']:.1f} on average, {r['group_ms']:.1f} ms each)"
                if r.get("groups")
                else ""
            )
            rows.append(
                _ratio_row(
                    r,
                    f"{r['ledger']:,.0f} commands/s{grouped}",
                    f"{r['reference']:,.0f} rows/s raw INSERT+COMMIT, same threads",
                )
            )
    for r in by_key.get("batch", []):
        rows.append(
            _ratio_row(
                r,
                f"{r['ledger']:,.0f} lines/s" if r["ledger"] is not None else "",
                f"{r['reference']:,.0f} rows/s raw INSERT+COMMIT, 1 thread"
                if r["reference"] is not None
                else "",
            )
        )
    for r in by_key.get("replay", []):
        rows.append(
            _ratio_row(
                r,
                f"{r['ledger']:,.0f} commands/s",
                f"{r['reference']:,.0f} transactions/s, the same SQL replayed",
            )
        )
    rebuilds = by_key.get("rebuild", [])
    if rebuilds:
        r = max(rebuilds, key=lambda x: x["events"])
        copy = r["copy_out_seconds"] + r["copy_in_seconds"]
        rows.append(
            _ratio_row(
                r,
                f"{r['seconds']:.2f} s ({r['ledger']:,.0f} events/s)",
                f"{copy:.2f} s (COPY out {r['copy_out_seconds']:.2f} s + "
                f"in {r['copy_in_seconds']:.2f} s)",
            )
        )
    for r in by_key.get("latency", []):
        rows.append(
            {
                "key": "latency",
                "benchmark": r["name"],
                "figure": f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms",
                "reference": "-",
                "ratio": None,
                "target": "reported",
                "met": "-",
                "value": r["p99_ms"],
            }
        )
    if rebuilds:
        best = max(r["ledger"] for r in rebuilds)
        largest = max(rebuilds, key=lambda x: x["events"])
        sizes = " / ".join(f"{r['events']:,}" for r in rebuilds)
        rows.append(
            {
                "key": "scale",
                "benchmark": f"rebuild's scale curve, {sizes} events",
                "figure": " / ".join(f"{r['ledger']:,.0f}" for r in rebuilds) + " events/s",
                "reference": "-",
                "ratio": largest["ledger"] / best,
                "target": f"linear (>= {CURVE_FLOOR} of the best rate)",
                "met": _met(largest["ledger"] / best >= CURVE_FLOOR),
                "value": largest["ledger"],
            }
        )
        peak = max(r["peak_rss_mb"] for r in rebuilds)
        rows.append(
            {
                "key": "memory",
                "benchmark": f"rebuild's peak memory, {sizes} events",
                "figure": " / ".join(f"{r['peak_rss_mb']:.0f}" for r in rebuilds) + " MB",
                "reference": "-",
                "ratio": None,
                "target": f"bounded (< {MEMORY_LIMIT_MB} MB)",
                "met": _met(peak < MEMORY_LIMIT_MB),
                "value": peak,
            }
        )
    for r in by_key.get("access", []):
        rows.append(
            {
                "key": "access",
                "benchmark": r["name"],
                "figure": f"p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms",
                "reference": "1 ms budget",
                "ratio": r["ratio"],
                "target": "p99 < 1 ms",
                "met": _met(r["p99_ms"] < 1.0),
                "value": r["p99_ms"],
            }
        )
    audits = by_key.get("audit", [])
    if audits:
        largest = max(audits, key=lambda x: x["events"])
        rows.append(
            {
                "key": "audit",
                "benchmark": "`audit revenue --group-by month`, "
                + " / ".join(f"{r['events']:,}" for r in audits)
                + " events",
                "figure": " / ".join(f"{r['ledger']:.3f}" for r in audits) + " s",
                "reference": f"COPY of the {largest['events']:,} events out: "
                f"{largest['reference']:.2f} s",
                "ratio": largest["ratio"],
                "target": ">= 1 (one pass in the server beats reading the log out)",
                "met": _met(largest["ratio"] >= 1),
                "value": largest["ledger"],
            }
        )
    rows += issue26(by_key, results)
    return rows


def issue26(
    by_key: dict[str, list[dict[str, Any]]], results: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Issue 26's two performance rows: heartbeats into the playback store from 8 threads,
    and from 32 HTTP clients of ``ledger serve`` (with its p99)."""
    rows: list[dict[str, Any]] = []
    for r in by_key.get("playback_threads", []):
        cpu = f"; CPU ms a heartbeat {_cpu(r, 'ledger')}" if r.get("ledger_client_cpu_ms") else ""
        grouped = (
            f" (groups of {r['group_size']:.1f}, {r['group_ms']:.1f} ms each{cpu})"
            if r.get("group_size")
            else ""
        )
        raw = f"; CPU ms a row {_cpu(r, 'raw')}" if r.get("raw_client_cpu_ms") else ""
        rows.append(
            _ratio_row(
                r,
                f"{r['ledger']:,.0f} heartbeats/s{grouped}",
                f"{r['reference']:,.0f} rows/s raw INSERT+COMMIT, 8 threads{raw}",
            )
        )
    named = {r["name"]: r for r in results}
    served = named.get("serve: heartbeats, 32 HTTP clients")
    p99 = named.get("serve: heartbeats, 32 clients p99")
    if served is not None and served["ratio"] is not None:
        row = _ratio_row(
            {**served, "key": "serve_heartbeats"},
            f"{served['ledger']:,.0f} cmd/s, p99 " + (f"{p99['ledger']:.1f} ms" if p99 else "?"),
            f"{served['reference']:,.0f} cmd/s, 8 processes x 1 line a transaction",
        )
        if p99 is not None:
            row["target"] = ">= 5.0, p99 < 50 ms"
            row["met"] = _met(served["ratio"] >= served["target"] and p99["ledger"] < 50)
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], run: dict[str, Any]) -> str:
    """Issue 16's table as docs/performance.md shows it."""
    out = [
        f"Run {run['date']}: {run['cores']} cores ({run['cpu']}), {run['system']}, "
        f"PostgreSQL {run['postgres']}, Python {run['python']}, psycopg {run['psycopg']}; "
        f"load average {run['load_before']:.1f} at the start, {run['load_after']:.1f} at the end.",
        "",
        "| benchmark | figure | reference | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        out.append(
            f"| {row['benchmark']} | {row['figure']} | {row['reference']} | {ratio} | "
            f"{row['target']} | {row['met']} |"
        )
    return "\n".join(out)


def combined(paths: list[str]) -> str:
    """Issue 16's table from the results of several runs (``python -m benchmarks.table
    A.json B.json``): each row comes from the run that measured it, its ratio from that
    run's pairs; the runs' dates and machines are listed."""
    import json

    results: list[dict[str, Any]] = []
    runs = []
    for path in paths:
        with open(path) as file:
            report = json.load(file)
        results += report["results"]
        runs.append(report["run"])
    text = [
        f"Runs: {'; '.join(_run_line(r) for r in runs)}.",
        "",
        *markdown(issue16(results), runs[0]).splitlines()[2:],
    ]
    return "\n".join(text)


def _run_line(run: dict[str, Any]) -> str:
    return f"{run['date']} (load {run['load_before']:.1f} -> {run['load_after']:.1f})"


if __name__ == "__main__":
    import sys

    print(combined(sys.argv[1:]))
