"""Private ``LEDGER_HOME`` directories, each with its own embedded server, for the tests of the
embedded server and of the commands that depend on it (``db stop``, ``db status``, ``demo``).

Homes are made in the temporary directory itself (not under pytest's base directory, which is
closed to other users): run as root, the server's own account must be able to reach them.

``initialised_home`` is for the tests whose subject is not the first ``initdb`` (1.5-2.5 s
of a start, more under load): its data directory is a copy of one the product initialised
once per test process (``embedded.url()``, then ``embedded.stop()``: a clean shutdown, so the
copy is a cold copy of a stopped server, as a backup is), owners and modes kept.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ledger.database import embedded


def home_env(home: Path) -> dict[str, str]:
    """The environment of a command using the embedded server under ``home`` (no URL)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LEDGER_DATABASE_URL", "LEDGER_TEST_DATABASE_URL", "LEDGER_SCHEMA")
    }
    env["LEDGER_HOME"] = str(home)
    return env


@contextmanager
def pointing_at(home: Path) -> Iterator[None]:
    """``LEDGER_HOME`` set to ``home`` in this process, for the in-process API."""
    before = os.environ.get("LEDGER_HOME")
    os.environ["LEDGER_HOME"] = str(home)
    try:
        yield
    finally:
        if before is None:
            del os.environ["LEDGER_HOME"]
        else:
            os.environ["LEDGER_HOME"] = before


@contextmanager
def private_home(name: str = "home") -> Iterator[Path]:
    """A fresh home named ``name`` inside a new temporary directory; its server stopped after."""
    parent = Path(tempfile.mkdtemp(prefix="ledger-test-"))
    parent.chmod(0o755)
    home = parent / name
    try:
        yield home
    finally:
        with pointing_at(home):
            if home.exists():
                embedded.stop()
        shutil.rmtree(parent, ignore_errors=True)


_template: list[Path] = []  # this process's initialised home, made on first use


def _initialised_template() -> Path:
    if not _template:
        parent = Path(tempfile.mkdtemp(prefix="ledger-test-template-"))
        parent.chmod(0o755)
        atexit.register(shutil.rmtree, parent, True)
        home = parent / "home"
        with pointing_at(home):
            embedded.url()  # initdb, the server started, the ledger's database created
            embedded.stop()
        (home / "server.log").unlink(missing_ok=True)
        _template.append(home)
    return _template[0]


@contextmanager
def initialised_home(name: str = "home") -> Iterator[Path]:
    """As ``private_home``, with its server's data directory already initialised (stopped):
    the first command starts the server without running ``initdb``."""
    template = _initialised_template()
    with private_home(name) as home:
        # cp -a: run as root, the data directory belongs to the server's account
        subprocess.run(["cp", "-a", str(template), str(home)], check=True)
        yield home
