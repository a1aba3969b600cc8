"""The errors of the ledger's surroundings (settings, the database, the embedded server).

The rejections of commands are the domain's (``ledger.domain.errors``). This module
imports nothing of the ledger, so every module may raise these without a cycle.
"""

from __future__ import annotations


class ConfigurationError(Exception):
    """A setting is wrong or the database cannot be reached (exit status 2)."""
