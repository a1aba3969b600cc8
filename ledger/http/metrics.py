"""The service's Prometheus metrics, on a registry of each app's own (so two apps in one
process, as in tests, never share or clash).

Label values come from finite sets: a command's ``type`` is one of the catalogue's (or
``unknown`` for a body that did not parse), its ``status`` a result status or error code,
and Stripe event types beyond ``MAX_STRIPE_TYPES`` distinct ones count as ``other``, so a
sender cannot grow the registry without bound.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ledger.commands.by_type import COMMAND_TYPES
from ledger.commands.results import Result
from ledger.http.answers import ServiceError

MAX_STRIPE_TYPES = 64
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_REFUSALS = {401: "unauthorized", 403: "forbidden", 413: "too_large", 503: "overloaded"}


def outcome(result: Result) -> str:
    """``accepted``, ``duplicate``, ``rolled_back`` or the rejection's error code."""
    return result.error.code if result.error is not None else result.status


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.commands = Counter(
            "ledger_commands",
            "Commands answered, by command type and status (result status or error code)",
            ["type", "status"],
            registry=r,
        )
        self.append_seconds = Histogram(
            "ledger_append_seconds",
            "Time from a request's commands reaching the writer to their results",
            ["kind"],
            buckets=_LATENCY,
            registry=r,
        )
        self.group_seconds = Histogram(
            "ledger_group_commit_seconds",
            "Time of one group commit (one transaction for several appends)",
            buckets=_LATENCY,
            registry=r,
        )
        self.group_size = Histogram(
            "ledger_group_commit_size",
            "Appends committed together in one group commit",
            buckets=_SIZES,
            registry=r,
        )
        self.projection_lag = Gauge(
            "ledger_projection_lag_events",
            "Events of the log a projected table does not reflect (the head, when stale)",
            ["projection"],
            registry=r,
        )
        self.projection_stale = Gauge(
            "ledger_projection_stale",
            "1 when a projected table is missing or marked stale",
            ["projection"],
            registry=r,
        )
        self.playback = Gauge(
            "ledger_playback",
            "The playback store: heartbeats retained, partitions, last position, base rows, "
            "and the age in seconds of the oldest heartbeat retained (the retention's lag)",
            ["measure"],
            registry=r,
        )
        self.stripe_events = Counter(
            "ledger_stripe_events",
            "Stripe webhook deliveries, by event type and outcome",
            ["type", "outcome"],
            registry=r,
        )
        self.in_flight = Gauge(
            "ledger_http_requests_in_flight", "Requests being served (bounded)", registry=r
        )
        self.refused = Counter(
            "ledger_http_refused",
            "Requests refused before any work, by reason (unauthorized, too_large, overloaded)",
            ["reason"],
            registry=r,
        )
        self._stripe_types: set[str] = set()
        self._lock = threading.Lock()
        # the children a request counts on, each looked up once (``labels`` checks and
        # joins its values under a lock at every call): a finite set, as the labels are
        self._counted: dict[tuple[str, str], Any] = {}
        self.command_seconds = self.append_seconds.labels("command")

    def count(self, command_type: str, result: Result) -> None:
        known = command_type if command_type in COMMAND_TYPES else "unknown"
        labels = (known, outcome(result))
        child = self._counted.get(labels)
        if child is None:  # the webhook counts from threads: one child per labels still
            child = self._counted.setdefault(labels, self.commands.labels(*labels))
        child.inc()

    def refuse(self, error: ServiceError) -> None:
        """A request refused by the service itself (401, 413, 503 overloaded); the
        database being unavailable is not a refusal and is not counted here."""
        reason = _REFUSALS.get(error.status)
        if reason is not None and error.code != "unavailable":
            self.refused.labels(reason).inc()

    def stripe_event(self, event_type: str, outcome: str) -> None:
        """The webhook's callback: one delivery of ``event_type`` ended in ``outcome``."""
        with self._lock:
            if event_type not in self._stripe_types:
                if len(self._stripe_types) >= MAX_STRIPE_TYPES:
                    event_type = "other"
                self._stripe_types.add(event_type)
        self.stripe_events.labels(event_type, outcome).inc()

    def group_committed(self, size: int, seconds: float) -> None:
        """The group commit's callback (``ledger.observe_groups``)."""
        self.group_size.observe(size)
        self.group_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
