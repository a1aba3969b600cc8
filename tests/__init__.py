"""The test suite's package. Importing it (pytest does, for ``tests/conftest.py``, in the
controller and in every xdist worker, before any other test module) keeps compiled
bytecode where ``PYTHONDONTWRITEBYTECODE`` is set (it is, in this machine's environment).

Why: with it set, every pytest process rewrote and compiled all 250 test modules again
(about 4 s of CPU a process: 2.1 s against 6.1 s to collect, measured) and every ``ledger``
the tests start as a process compiled the package again (about 0.15 s each). The setting's
purpose, no ``__pycache__`` in the tree, is kept: the bytecode goes to a folder of its own
outside it (``PYTHONPYCACHEPREFIX``, or ``<tmp>/ledger-pycache-<uid>``), for this process
and, through the environment, for the processes it starts. Without the setting nothing
changes here.
"""

from __future__ import annotations

import os
import sys
import tempfile


def _keep_compiled_bytecode() -> None:
    if not sys.dont_write_bytecode:
        return
    prefix = sys.pycache_prefix or os.path.join(
        tempfile.gettempdir(), f"ledger-pycache-{os.getuid()}"
    )
    sys.pycache_prefix = prefix
    sys.dont_write_bytecode = False
    os.environ["PYTHONPYCACHEPREFIX"] = prefix
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


_keep_compiled_bytecode()
