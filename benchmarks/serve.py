"""``python -m benchmarks --only serve``: the HTTP service against today's path, side by side.

The reference is 8 processes each appending its share of the commands one line per
transaction, as 8 ``ledger append`` processes do. Against it, ``ledger serve`` (a
subprocess) takes the same commands from 8 and then 32 concurrent HTTP clients, each
sending one command per request and waiting for its answer; the load generator is a
process of its own (plain asyncio HTTP/1.1 keep-alive connections: a generator heavier
than the service would measure itself). Heartbeats (``playback.progress``) first, then
purchases; throughput and p50/p99 latency per run, on fresh schemas of one server.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

import orjson
import psutil

from benchmarks.cpu import cpu_seconds, used_between
from benchmarks.workload import VIDEOS, drop, purchase_lines, scratch, setup_lines, video
from ledger import api
from ledger.commands.parsing import parse_command
from ledger.config import Settings

TOKEN = "bench-token"
PROCESSES = 8
CLIENT_COUNTS = (8, 32)


def heartbeat_lines(count: int, prefix: str, users: int) -> list[bytes]:
    """``count`` heartbeats of ``users`` viewers, each watching one video."""
    return [
        orjson.dumps(
            {
                "type": "playback.progress",
                "user_id": f"u{n % users}",
                "content_id": video(n % users % VIDEOS),
                "position_seconds": n // users,
                "duration_seconds": 36_000,
                "idempotency_key": f"{prefix}{n}",
            }
        )
        for n in range(count)
    ]


def grant_lines(users: int) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "type": "access.grant",
                "user_id": f"u{n}",
                "content_id": video(n % VIDEOS),
                "access_type": "complimentary",
                "idempotency_key": f"grant-{n}",
            }
        )
        for n in range(users)
    ]


def prepared(url: str, users: int) -> Settings:
    settings = scratch(url)
    with api.open_ledger(settings) as app:
        results = [
            r
            for _, r in api.append_lines(app, setup_lines(users) + grant_lines(users), atomic=True)
        ]
    assert all(r.status == "accepted" for r in results), {r.status for r in results}
    return settings


# --- the reference: 8 processes, one line per transaction -------------------------------


def _line_process(
    url: str, schema: str, lines: list[bytes], barrier: Any
) -> tuple[int, float, float]:
    with api.open_ledger(Settings(url=url, schema=schema)) as app:
        commands = [parse_command(line) for line in lines]
        barrier.wait()
        started = time.perf_counter()
        accepted = sum(1 for c in commands if app.execute(c).status == "accepted")
        return accepted, started, time.perf_counter()


class Writers:
    """``PROCESSES`` spawned writer processes and the barrier they start at, kept for every
    reference run of a suite: a spawn costs about 0.5 s of CPU (an interpreter and the
    ledger's imports) and its start is not measured; each run's writers still open their
    own ledger and start together."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.manager = context.Manager()
        self.barrier = self.manager.Barrier(PROCESSES)
        self.pool = context.Pool(PROCESSES)

    def close(self) -> None:
        # as ``with Pool(...)`` and ``with Manager()`` end: the processes stopped
        self.pool.terminate()
        self.pool.join()
        self.manager.shutdown()


def per_line_processes(settings: Settings, lines: list[bytes], writers: Writers) -> float:
    """Commands per second of ``PROCESSES`` writers, each line its own transaction."""
    shares = [lines[n::PROCESSES] for n in range(PROCESSES)]
    done = writers.pool.starmap(
        _line_process, [(settings.url, settings.schema, s, writers.barrier) for s in shares]
    )
    accepted = sum(d[0] for d in done)
    assert accepted == len(lines), (accepted, len(lines))
    return accepted / (max(d[2] for d in done) - min(d[1] for d in done))


# --- the service and its load -------------------------------------------------------------


class Service:
    """``ledger serve`` of this checkout, or of the source tree ``tree`` (``serve_trees``
    alternates two trees in one run)."""

    def __init__(self, settings: Settings, tree: str | None = None) -> None:
        env = dict(
            os.environ,
            LEDGER_DATABASE_URL=settings.url,
            LEDGER_SCHEMA=settings.schema,
            LEDGER_API_TOKENS=TOKEN,
        )
        if tree is not None:
            env["PYTHONPATH"] = tree
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ledger", "serve", "--port", "0"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tree,
        )
        assert self.process.stderr is not None
        for line in self.process.stderr:
            found = re.search(r"serving on http://([\d.]+):(\d+)", line)
            if found:
                self.host, self.port = found.group(1), int(found.group(2))
                break
        else:
            raise RuntimeError(
                f"ledger serve from {tree or 'this checkout'} exited {self.process.wait()}"
            )
        threading.Thread(target=self.process.stderr.read, daemon=True).start()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


async def _client(host: str, port: int, bodies: list[bytes], latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    head = (
        f"POST /v1/commands HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    ok = 0
    for body in bodies:
        started = time.perf_counter()
        writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_line = await reader.readline()
        length = 0
        while True:
            header = await reader.readline()
            if header in (b"\r\n", b""):
                break
            if header.lower().startswith(b"content-length:"):
                length = int(header.split(b":", 1)[1])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        ok += status_line.split(b" ", 2)[1] in (b"200", b"201")
    writer.close()
    return ok


def _load(host: str, port: int, bodies: list[bytes], clients: int, out: Any) -> None:
    """A run of the load generator: ``clients`` connections share ``bodies``."""
    latencies: list[float] = []

    async def main() -> int:
        shares = [bodies[n::clients] for n in range(clients)]
        done = await asyncio.gather(*(_client(host, port, s, latencies) for s in shares))
        return sum(done)

    started = time.perf_counter()
    ok = asyncio.run(main())
    elapsed = time.perf_counter() - started
    out.put((ok, elapsed, latencies))


def _generate(jobs: Any, out: Any) -> None:
    """The load generator's process: the runs it is given, one after the other."""
    for host, port, bodies, clients in iter(jobs.get, None):
        _load(host, port, bodies, clients, out)


class LoadGenerator:
    """The load generator, a process of its own started once for every run of a suite (a
    spawn is about 0.5 s of CPU, not measured, and was made twice per run)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.jobs, self.out = context.Queue(), context.Queue()
        self.process = context.Process(target=_generate, args=(self.jobs, self.out))
        self.process.start()

    def run(self, host: str, port: int, bodies: list[bytes], clients: int) -> Any:
        self.jobs.put((host, port, bodies, clients))
        while True:
            try:
                return self.out.get(timeout=1)
            except queue.Empty:
                if not self.process.is_alive():
                    raise RuntimeError(
                        f"the load generator exited {self.process.exitcode}"
                    ) from None

    def close(self) -> None:
        self.jobs.put(None)
        self.process.join(60)
        if self.process.is_alive():  # a run still going (its suite failed): stopped
            self.process.terminate()
            self.process.join()


def _postgres() -> list[int]:
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]


def _group_totals(service: Service) -> tuple[float, float]:
    """(groups committed, commands in them) so far, from the service's /metrics."""
    with urllib.request.urlopen(f"http://{service.host}:{service.port}/metrics") as answer:
        text = answer.read().decode()
    found = dict(re.findall(r"^ledger_group_commit_size_(count|sum) (\S+)$", text, re.M))
    return float(found.get("count", 0)), float(found.get("sum", 0))


def over_http(
    service: Service, lines: list[bytes], clients: int, generator: LoadGenerator
) -> dict[str, float]:
    """Throughput and latency of ``lines`` sent by ``clients`` clients, and where the CPU
    went: the service's process and every PostgreSQL process (its backends, and the WAL
    writer that flushes the commits), per command; the mean group commit."""
    served = service.process.pid
    groups_before = _group_totals(service)
    cpu_before = cpu_seconds([served]), cpu_seconds(_postgres())
    ok, elapsed, latencies = generator.run(service.host, service.port, lines, clients)
    cpu_after = cpu_seconds([served]), cpu_seconds(_postgres())
    groups_after = _group_totals(service)
    assert ok == len(lines), f"{len(lines) - ok} requests were not answered 2xx"
    cuts = statistics.quantiles(latencies, n=100)
    groups = groups_after[0] - groups_before[0]
    return {
        "rate": ok / elapsed,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "service_cpu_ms": used_between(cpu_before[0], cpu_after[0]) / ok * 1000,
        "postgres_cpu_ms": used_between(cpu_before[1], cpu_after[1]) / ok * 1000,
        "group": (groups_after[1] - groups_before[1]) / groups if groups else 0.0,
    }


def _row(
    name: str, ledger: float, reference: float | None, target: float | None, unit: str
) -> dict[str, Any]:
    return {
        "name": name,
        "ledger": ledger,
        "reference": reference,
        "ratio": None if reference is None else ledger / reference,
        "target": target,
        "unit": unit,
    }


def bench_serve(
    url: str, quick: bool, count: int | None = None, users: int = 400
) -> list[dict[str, Any]]:
    """``count`` commands a run (default 8,000; 2,000 when ``quick``) from ``users``
    customers (a smoke run sets fewer: each schema's set-up registers and grants them)."""
    count = count or (2000 if quick else 8000)
    rows: list[dict[str, Any]] = []
    writers = Writers()
    try:
        generator = LoadGenerator()
        try:
            for kind, make, target in (
                ("heartbeats", lambda p, n, first: heartbeat_lines(n, p, users), 5.0),
                ("purchases", lambda p, n, first: purchase_lines(n, p, users, first), 3.0),
            ):
                rows += _suite(url, users, count, kind, make, target, writers, generator)
        finally:
            generator.close()
    finally:
        writers.close()
    return rows


def _suite(
    url: str,
    users: int,
    count: int,
    kind: str,
    make: Any,
    target: float,
    writers: Writers,
    generator: LoadGenerator,
) -> list[dict[str, Any]]:
    """One kind's rows: the reference, then each count of HTTP clients on a fresh schema."""
    rows: list[dict[str, Any]] = []
    warm = count // 10
    settings = prepared(url, users)
    try:
        reference = per_line_processes(settings, make("ref-", count, 0), writers)
    finally:
        drop(settings)
    rows.append(_row(f"serve: {kind}, 8 procs x 1 line/txn", reference, None, None, "cmd/s"))
    for clients in CLIENT_COUNTS:
        settings = prepared(url, users)
        service = Service(settings)
        try:
            over_http(service, make("warm-", warm, count), clients, generator)  # warm up
            measured = over_http(service, make(f"c{clients}-", count, 0), clients, generator)
        finally:
            service.stop()
            drop(settings)
        rows.append(
            _row(
                f"serve: {kind}, {clients} HTTP clients",
                measured["rate"],
                reference,
                target if clients == 32 else None,
                "cmd/s",
            )
        )
        for quantile in ("p50_ms", "p99_ms"):
            limit = 50.0 if clients == 32 and quantile == "p99_ms" else None
            rows.append(
                _row(
                    f"serve: {kind}, {clients} clients {quantile[:3]}",
                    measured[quantile],
                    None,
                    limit,
                    "ms",
                )
            )
        for figure, label, unit in (
            ("service_cpu_ms", "service CPU per command", "ms"),
            ("postgres_cpu_ms", "PostgreSQL CPU per command", "ms"),
            ("group", "mean group commit", "cmd"),
        ):
            rows.append(
                _row(
                    f"serve: {kind}, {clients} clients {label}",
                    measured[figure],
                    None,
                    None,
                    unit,
                )
            )
    return rows
