"""``ledger serve`` forked from a process that has imported the ledger already.

A start of ``python -m ledger serve`` costs about a second of CPU before it answers: the
interpreter, then the ledger's, FastAPI's and uvicorn's imports (``python -X importtime``:
about 0.9 s of the 1.0). The HTTP tests start it about 60 times a run. This module's parent
process (one per test process, started on first use, ``python -m tests.forkserve``) imports
all that once, then forks a child per start; the child is given the test's standard input,
output and error (file descriptors passed over a Unix socket), its environment and its
working directory, gets the signal dispositions a new interpreter starts with, and runs
``ledger`` as ``python -m ledger`` does (``runpy``), exiting as the interpreter would: the
status ``main`` returns, 1 with a traceback for an uncaught exception, killed by SIGINT
after an uncaught ``KeyboardInterrupt``, non-daemon threads joined and ``atexit`` run first.
The parent reaps it and sends the exit status back, so ``Forked`` answers ``poll``,
``wait``, ``send_signal`` and ``returncode`` as ``subprocess.Popen`` does (a negative
status: killed by that signal). ``tests/integration/test_forkserve.py`` holds a forked
start to a real one: output, exit statuses after SIGTERM, SIGINT and SIGKILL, a refused
start, the environment.

What the fork cannot give a child is a new interpreter's hash seed and start-up flags: the
parent's are those of the test process that started it, with the same environment.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import runpy
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from types import FrameType
from typing import IO, Any

# what ``ledger serve`` imports before it answers (uvicorn's run-time choices included)
PRELOAD = (
    "ledger.cli",
    "ledger.http.server",
    "ledger.http.config",
    "ledger.http.app",
    "uvicorn.loops.auto",
    "uvicorn.loops.asyncio",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.lifespan.on",
    "httptools",
    "uvloop",
)
# as a new interpreter starts: SIGINT raises KeyboardInterrupt, SIGPIPE is ignored
_START: dict[int, Callable[[int, FrameType | None], Any] | int] = {
    signal.SIGINT: signal.default_int_handler,
    signal.SIGPIPE: signal.SIG_IGN,
}


class Forked:
    """A forked ``ledger`` process, as much of ``subprocess.Popen`` as the tests use."""

    def __init__(
        self,
        args: list[str],
        pid: int,
        channel: socket.socket,
        stderr: IO[str] | None,
        stdin: IO[str] | None = None,
        stdout: IO[str] | None = None,
    ):
        self.args = args
        self.pid = pid
        self.channel = channel
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None

    def _status(self, timeout: float | None) -> int | None:
        if self.returncode is None:
            self.channel.settimeout(timeout)
            try:
                message = self.channel.recv(64)
            except (BlockingIOError, TimeoutError):
                return None
            if not message.startswith(b"exit "):
                raise RuntimeError(f"the fork server lost process {self.pid}: {message!r}")
            self.returncode = int(message[5:])
            self.channel.close()
        return self.returncode

    def poll(self) -> int | None:
        return self._status(0)

    def wait(self, timeout: float | None = None) -> int:
        status = self._status(timeout)
        if status is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return status

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:  # never a signal to a pid already reaped (and maybe reused)
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """The parent process of this test process's forked starts, and the way to ask it."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="ledger-forkserve-")
        self.path = os.path.join(self.directory, "socket")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.forkserve", self.path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline()  # it says so once it listens
        if ready != b"ready\n":
            raise RuntimeError(f"the fork server did not start: {ready!r}")

    def start(self, args: list[str], env: dict[str, str], *, streams: bool = False) -> Forked:
        """``python -m ledger *args`` with ``env``: stdin and stdout /dev/null, stderr a
        pipe (text), as ``tests/serving.py`` starts ``ledger serve``. ``streams``: stdin
        and stdout pipes (text) and stderr the test process's own, as ``Popen(stdin=PIPE,
        stdout=PIPE, text=True)`` gives a command fed and read by the test."""
        ours: list[int] = []  # the test's ends of the pipes
        theirs: list[int] = []  # the child's, closed here once sent
        with open(os.devnull, "rb") as null_in, open(os.devnull, "wb") as null_out:
            if streams:
                stdin_read, stdin_write = os.pipe()
                stdout_read, stdout_write = os.pipe()
                ours += [stdin_write, stdout_read]
                theirs += [stdin_read, stdout_write]
                fds = [stdin_read, stdout_write, sys.stderr.fileno()]
            else:
                read_end, write_end = os.pipe()
                ours.append(read_end)
                theirs.append(write_end)
                fds = [null_in.fileno(), null_out.fileno(), write_end]
            channel = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            channel.connect(self.path)
            request = json.dumps({"args": args, "env": env, "cwd": os.getcwd()}).encode()
            socket.send_fds(channel, [request], fds)
        for fd in theirs:
            os.close(fd)
        answer = channel.recv(64)
        if not answer.startswith(b"pid "):
            for fd in ours:
                os.close(fd)
            raise RuntimeError(f"the fork server refused the start: {answer!r}")
        command = [sys.executable, "-m", "ledger", *args]
        pid = int(answer[4:])
        if streams:
            stdin = open(ours[0], "w", encoding="utf-8")  # noqa: SIM115
            stdout = open(ours[1], encoding="utf-8", errors="replace")  # noqa: SIM115
            return Forked(command, pid, channel, None, stdin, stdout)
        stderr = open(ours[0], encoding="utf-8", errors="replace")  # noqa: SIM115
        return Forked(command, pid, channel, stderr)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(60)
        if self.process.stdout is not None:
            self.process.stdout.close()
        shutil.rmtree(self.directory, ignore_errors=True)


_SERVER: list[ForkServer] = []


def server() -> ForkServer:
    """This test process's fork server, started on first use, stopped at its exit."""
    if not _SERVER or _SERVER[0].process.poll() is not None:
        _SERVER[:] = [ForkServer()]
        atexit.register(_SERVER[0].close)
    return _SERVER[0]


# --- the parent process ------------------------------------------------------------------


def _serve(path: str) -> None:
    for name in PRELOAD:
        with contextlib.suppress(ImportError):  # an optional speed-up uvicorn lacks too
            importlib.import_module(name)
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(16)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    children: dict[int, socket.socket] = {}
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while os.getppid() == parent:  # the test process gone: so is this one
        readable, _, _ = select.select([listener.fileno(), wake_read], [], [], 1.0)
        if wake_read in readable:
            os.read(wake_read, 4096)
        if listener.fileno() in readable:
            channel, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(channel, 1 << 20, 3)
            request = json.loads(message)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(request, fds)
            for fd in fds:
                os.close(fd)
            children[pid] = channel
            channel.send(f"pid {pid}".encode())
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            channel = children.pop(pid)
            with contextlib.suppress(OSError):  # the test gave up on it
                channel.send(f"exit {os.waitstatus_to_exitcode(status)}".encode())
            channel.close()


def _child(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: becomes ``python -m ledger *args`` and never returns."""
    status = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in signal.valid_signals():
            if signum in (signal.SIGKILL, signal.SIGSTOP):
                continue
            with contextlib.suppress(OSError, ValueError):
                signal.signal(signum, _START.get(signum, signal.SIG_DFL))
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # as Popen's close_fds leaves a child
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        status = _run(request["args"])
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(status)


def _run(args: list[str]) -> int:
    """As the interpreter runs ``-m ledger`` and exits."""
    sys.argv = ["ledger", *args]
    status = 0
    interrupted = False
    try:
        runpy.run_module("ledger", run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        if exit.code is None or isinstance(exit.code, int):
            status = exit.code or 0
        else:
            print(exit.code, file=sys.stderr)
            status = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        interrupted = True
    except BaseException:
        traceback.print_exc()
        status = 1
    threading._shutdown()  # type: ignore[attr-defined]  # the interpreter's own join
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            status = status or 120
    if interrupted:  # as CPython dies of an uncaught KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return status


if __name__ == "__main__":
    _serve(sys.argv[1])
