"""The real service for the HTTP tests: ``ledger serve --port 0`` in a subprocess on the
test's schema, found by the port it prints, and a real HTTP client (httpx)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ledger.config import Settings
from tests import forkserve
from tests.forkserve import Forked

TOKEN = "test-token-1"
SERVING = re.compile(r"serving on (http://127\.0\.0\.1:\d+)")


@dataclass
class Served:
    process: subprocess.Popen[str] | Forked
    url: str
    stderr: list[str] = field(default_factory=list)
    # set once the process's stderr is closed and every line of it read (by ``serve``'s pump)
    ended: threading.Event = field(default_factory=threading.Event)

    def client(self, token: str | None = TOKEN, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]

    def async_client(self, token: str | None = TOKEN, **kwargs: object) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout)

    def log(self) -> str:
        return "".join(self.stderr)

    def whole_log(self, timeout: float = 30) -> str:
        """The log to its last line, once the process has exited: ``log`` right after a
        ``wait`` may miss what the reading thread has not appended yet (a traceback
        printed as the process ended, say), and an assertion on it would pass unseen."""
        assert self.ended.wait(timeout), "the service's stderr never closed: " + self.log()
        return self.log()


def server_env(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LEDGER_DATABASE_URL=settings.url,
        LEDGER_SCHEMA=settings.schema,
        LEDGER_API_TOKENS=f"{TOKEN},test-token-2",
    )
    env.update(extra or {})
    return env


@contextmanager
def serve(
    settings: Settings, script: Path | None = None, *, real_process: bool = False, **extra: str
) -> Iterator[Served]:
    """The service on an ephemeral loopback port until the block ends (then SIGTERM),
    forked from this test process's fork server (``tests/forkserve.py``: a start without
    the interpreter's and the imports' second of CPU); ``real_process``: started as a new
    ``python -m ledger`` instead (what a test of the process itself keeps); ``script``: run
    by that script, a stand-in for ``python -m ledger`` that plants a fault first
    (tests/faulty_serve.py)."""
    env = server_env(settings, extra)
    if script is None and not real_process:
        started: subprocess.Popen[str] | Forked = forkserve.server().start(
            ["serve", "--port", "0"], env
        )
    else:
        entry = [str(script)] if script else ["-m", "ledger"]
        started = subprocess.Popen(
            [sys.executable, *entry, "serve", "--port", "0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    process = started
    assert process.stderr is not None
    lines: list[str] = []
    found: list[str] = []
    ready, ended = threading.Event(), threading.Event()

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = SERVING.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ended.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 60
    while not ready.wait(0.1):
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("ledger serve did not start: " + "".join(lines))
    if not found:
        process.wait(10)
        raise AssertionError(f"ledger serve exited {process.returncode}: {''.join(lines)}")
    served = Served(process, found[0], lines, ended)
    try:
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
