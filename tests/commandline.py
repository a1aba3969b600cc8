"""The ``ledger`` command run inside the test's process: ``main`` with its arguments, its
environment and its standard input given, its output captured, its exit status returned.

Starting ``python -m ledger`` costs about 0.4 s (the interpreter and the ledger's
imports); the suite ran about 300 such starts. What most tests check is the command's
answer (its output, its errors, its exit status, what it wrote), not that it is a
separate process: they run it here. Tests about a signal, a pipe, a killed or a
concurrent process, or the interpreter's own start keep a real process
(``tests.support.cli_process``, ``appender``).

The environment is the one given, whole, while the command runs (as ``subprocess.run``
gives it), and the signal handlers the command installs are put back afterwards.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ledger.cli import EXIT_ERROR, EXIT_OK, main


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def _signals() -> Iterator[None]:
    signals = (signal.SIGINT, signal.SIGTERM)
    saved = [signal.getsignal(signum) for signum in signals]
    try:
        yield
    finally:
        for signum, handler in zip(signals, saved, strict=True):
            signal.signal(signum, handler)


class _Stream(io.TextIOWrapper):
    """A text stream over bytes, with the ``buffer`` the commands write JSON Lines to."""

    def __init__(self, data: bytes = b"") -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8", errors="strict", newline=None)

    def text(self) -> str:
        self.flush()
        raw = self.buffer
        assert isinstance(raw, io.BytesIO)
        return raw.getvalue().decode("utf-8", errors="replace").replace("\r\n", "\n")


def run(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """As ``subprocess.run([python, -m, ledger, *args], env=env, input=stdin, text=True,
    capture_output=True)``: a ``CompletedProcess`` with the exit status and the output."""
    stdin_stream = _Stream((stdin or "").encode("utf-8"))
    stdout, stderr = _Stream(), _Stream()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = stdin_stream, stdout, stderr
    try:
        with _environment(env), _signals():
            try:
                status = main(list(args))
            except SystemExit as exit:  # argparse: --help, --version, a usage error
                if exit.code is None or isinstance(exit.code, int):
                    status = exit.code or EXIT_OK
                else:
                    print(exit.code, file=sys.stderr)
                    status = EXIT_ERROR
            sys.stdout.flush()
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    return subprocess.CompletedProcess(
        [sys.executable, "-m", "ledger", *args], status, stdout.text(), stderr.text()
    )
