"""The service's settings, from the environment (docs/service.md, "Configuration").

Every bound has a default, so the service never holds unbounded memory: bodies per
command and per batch, commands per batch, and requests in flight.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ledger.errors import ConfigurationError

MIB = 1024 * 1024


@dataclass(frozen=True)
class HttpConfig:
    tokens: tuple[str, ...] = ()
    stripe_secrets: tuple[str, ...] = ()
    stripe_tolerance_seconds: int = 300
    max_command_bytes: int = MIB
    max_batch_commands: int = 1000
    max_batch_bytes: int = 8 * MIB
    max_in_flight: int = 256
    retry_after_seconds: int = 1
    read_pool_size: int = 4
    writers: int = 4

    def __post_init__(self) -> None:
        for name in (
            "stripe_tolerance_seconds",
            "max_command_bytes",
            "max_batch_commands",
            "max_batch_bytes",
            "max_in_flight",
            "retry_after_seconds",
            "read_pool_size",
            "writers",
        ):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name}: must be 1 or more, not {getattr(self, name)}")


# (environment variable, field)
_NUMBERS = (
    ("LEDGER_STRIPE_TOLERANCE_SECONDS", "stripe_tolerance_seconds"),
    ("LEDGER_HTTP_MAX_BATCH_COMMANDS", "max_batch_commands"),
    ("LEDGER_HTTP_MAX_BATCH_BYTES", "max_batch_bytes"),
    ("LEDGER_HTTP_MAX_IN_FLIGHT", "max_in_flight"),
    ("LEDGER_HTTP_READ_POOL_SIZE", "read_pool_size"),
    ("LEDGER_HTTP_WRITERS", "writers"),
)


def _listed(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _whole(name: str, text: str) -> int:
    value = text.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 12 or int(value) < 1:
        raise ConfigurationError(f"{name} {text!r}: give a whole number 1 or more")
    return int(value)


def from_env(environ: Mapping[str, str] | None = None) -> HttpConfig:
    """Tokens and secrets are comma-separated lists (several at once, for rotation)."""
    env = os.environ if environ is None else environ
    numbers = {field: _whole(name, env[name]) for name, field in _NUMBERS if env.get(name)}
    return HttpConfig(
        tokens=_listed(env.get("LEDGER_API_TOKENS", "")),
        stripe_secrets=_listed(env.get("LEDGER_STRIPE_WEBHOOK_SECRETS", "")),
        **numbers,
    )
