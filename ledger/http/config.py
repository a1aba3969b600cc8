"""The service's settings, from the environment (docs/service.md, "Configuration").

Every bound has a default, so the service never holds unbounded memory or time for any
client: bodies per command and per batch, commands per batch, requests in flight, a
request's header section (its size, and the time it may take to arrive), the time a body
may take, idle connections, and connections.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ledger.errors import ConfigurationError
from ledger.http.auth import Token, parse_tokens
from ledger.http.tenancy import DEFAULT_TENANT_ROLE, TENANT_ROLE_ENV

MIB = 1024 * 1024
# a header section's bound: enough for a bearer token, a Stripe signature and a proxy's
# headers at the least, at most what a server is expected to hold for one request
MIN_HEADER_BYTES, MAX_HEADER_BYTES = 1024, MIB


@dataclass(frozen=True)
class HttpConfig:
    tokens: tuple[Token, ...] = ()
    stripe_secrets: tuple[str, ...] = ()
    stripe_tolerance_seconds: int = 300
    max_command_bytes: int = MIB
    max_batch_commands: int = 1000
    max_batch_bytes: int = 8 * MIB
    max_in_flight: int = 256
    retry_after_seconds: int = 1
    read_pool_size: int = 4
    writers: int = 4
    max_header_bytes: int = 16 * 1024
    header_timeout_seconds: int = 10
    body_timeout_seconds: int = 30
    keep_alive_seconds: int = 5
    max_connections: int | None = None  # None: four times max_in_flight, and 64 more
    tenant_role: str = DEFAULT_TENANT_ROLE

    @property
    def connections(self) -> int:
        """Connections served; beyond, requests other than the probes answer 503."""
        if self.max_connections is None:
            return self.max_in_flight * 4 + 64
        return self.max_connections

    def __post_init__(self) -> None:
        if not MIN_HEADER_BYTES <= self.max_header_bytes <= MAX_HEADER_BYTES:
            raise ConfigurationError(
                f"{_env('max_header_bytes')}: must lie from {MIN_HEADER_BYTES} to "
                f"{MAX_HEADER_BYTES}, not {self.max_header_bytes}"
            )
        if self.connections < 1:
            raise ConfigurationError(
                f"{_env('max_connections')}: must be 1 or more, not {self.connections}"
            )
        for name in (
            "header_timeout_seconds",
            "body_timeout_seconds",
            "keep_alive_seconds",
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
                raise ConfigurationError(
                    f"{_env(name)}: must be 1 or more, not {getattr(self, name)}"
                )


# (environment variable, field)
_NUMBERS = (
    ("LEDGER_STRIPE_TOLERANCE_SECONDS", "stripe_tolerance_seconds"),
    ("LEDGER_HTTP_MAX_BATCH_COMMANDS", "max_batch_commands"),
    ("LEDGER_HTTP_MAX_BATCH_BYTES", "max_batch_bytes"),
    ("LEDGER_HTTP_MAX_IN_FLIGHT", "max_in_flight"),
    ("LEDGER_HTTP_READ_POOL_SIZE", "read_pool_size"),
    ("LEDGER_HTTP_WRITERS", "writers"),
    ("LEDGER_HTTP_MAX_HEADER_BYTES", "max_header_bytes"),
    ("LEDGER_HTTP_HEADER_TIMEOUT", "header_timeout_seconds"),
    ("LEDGER_HTTP_BODY_TIMEOUT", "body_timeout_seconds"),
    ("LEDGER_HTTP_KEEP_ALIVE_TIMEOUT", "keep_alive_seconds"),
    ("LEDGER_HTTP_MAX_CONNECTIONS", "max_connections"),
)


def _env(field: str) -> str:
    """The environment variable of a field, to name it in an error."""
    return next((name for name, f in _NUMBERS if f == field), field)


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
        tokens=parse_tokens(env.get("LEDGER_API_TOKENS", "")),
        stripe_secrets=_listed(env.get("LEDGER_STRIPE_WEBHOOK_SECRETS", "")),
        tenant_role=env.get(TENANT_ROLE_ENV, "").strip() or DEFAULT_TENANT_ROLE,
        **numbers,
    )
