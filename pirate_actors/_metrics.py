"""Prometheus metrics for a worker (``pirate-worker --metrics-port``, SPEC §15).

Nothing is counted here: a :class:`WorkerCollector` reads ``worker.stats()`` when Prometheus
scrapes, and turns the counters the worker keeps anyway into metric families named by the
Prometheus conventions (a ``pirate_actors_worker_`` prefix, ``_total`` on counters, one metric
with a label where several counters count the same thing for different reasons).
``docs/operations.md`` lists them.

This module needs the optional ``prometheus_client`` package (``pip install
'pirate_actors[metrics]'``); the rest of the library never imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["PREFIX", "WorkerCollector", "serve_metrics"]

PREFIX = "pirate_actors_worker"
STATS_TIMEOUT = 2.0  # a scrape must not hang on a worker that is busy stopping

logger = logging.getLogger(__name__)


class _HasStats(Protocol):
    """What the collector needs of a worker: a ``Worker`` in practice."""

    name: str
    id: str

    @property
    def capacity(self) -> int: ...

    def stats(self, timeout: float = ...) -> dict[str, Any]: ...


# (metric name without prefix and _total, help, label, {label value: stats key})
_COUNTERS: tuple[tuple[str, str, str | None, dict[str, str]], ...] = (
    ("messages", "Messages received from and sent to clients.", "direction",
     {"received": "received", "sent": "sent"}),
    ("dropped_messages", "Messages dropped unread, by reason.", "reason",
     {"malformed": "malformed", "unauthenticated": "unauthenticated", "replayed": "replayed",
      "late": "late"}),
    ("call_entries_received", "Call entries received from clients, by command.", "command",
     {"request": "requests", "cancel": "cancels"}),
    ("call_entries_sent", "Call entries sent to clients, by command.", "command",
     {"partial": "partials", "reply": "replies", "error": "errors"}),
    ("actor_replacements", "Procedure actors replaced after they died or were retired.", None,
     {"": "replacements"}),
    ("duplicate_requests", "Requests for a call already held or finished, answered without "
     "running it again.", None, {"": "duplicates"}),
    ("events", "Events sent to clients, or dropped (no client took them in time).", "outcome",
     {"sent": "events_sent", "dropped": "events_dropped"}),
)

# (metric name without prefix, help, stats key)
_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("calls_in_flight", "Calls running on a procedure actor now.", "in_flight"),
    ("oldest_call_seconds", "Seconds the longest-running call has been with its procedure "
     "actor (0 with none): alert on it to catch a procedure that never returns.",
     "oldest_call_seconds"),
    ("calls_queued", "Calls waiting inside the worker for a free procedure actor now.", "queued"),
    ("calls_held", "Calls the worker holds now, running or waiting, for all its clients.", "held"),
    ("live_actors", "Procedure actors alive now.", "live_actors"),
    ("registered_clients", "Clients the worker is registered with now.", "clients"),
    ("outcomes_kept", "Outcomes of retryable calls kept for a client that may ask again.",
     "outcomes_kept"),
    ("events_buffered", "Events kept while no client is registered.", "events_buffered"),
)


class WorkerCollector(Collector):
    """Yields a worker's counters as Prometheus metrics, read from ``worker.stats()`` at each
    scrape. When the stats cannot be read (the worker is stopping) only ``..._up 0`` is
    reported, so a scrape never fails and never shows stale numbers."""

    def __init__(self, worker: _HasStats) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        try:
            stats = self.worker.stats(timeout=STATS_TIMEOUT)
        except Exception as exc:  # not started, stopping or stopped: nothing to read
            logger.debug("no stats for the metrics scrape: %r", exc)
            stats = None
        up = GaugeMetricFamily(
            f"{PREFIX}_up", "1 if the worker's counters could be read for this scrape, else 0.")
        up.add_metric([], 0 if stats is None else 1)
        yield up
        info = InfoMetricFamily(PREFIX, "The worker's name and id (as clients show them).")
        info.add_metric([], {"name": self.worker.name, "id": self.worker.id})
        yield info
        capacity = GaugeMetricFamily(
            f"{PREFIX}_capacity", "Calls the worker holds at once: pool size x max_concurrency "
            "+ prefetch.")
        capacity.add_metric([], self.worker.capacity)
        yield capacity
        if stats is None:
            return
        yield from _families(stats)


def _families(stats: Mapping[str, Any]) -> Iterator[Metric]:
    """The counter and gauge families for ``stats``; a key the stats lack is left out."""
    for name, documentation, label, keys in _COUNTERS:
        labels = [label] if label else []
        counter = CounterMetricFamily(f"{PREFIX}_{name}", documentation, labels=labels)
        for value, key in keys.items():
            if isinstance(stats.get(key), (int, float)):
                counter.add_metric([value] if label else [], stats[key])
        if counter.samples:
            yield counter
    for name, documentation, key in _GAUGES:
        if isinstance(stats.get(key), (int, float)):
            yield GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=stats[key])


def serve_metrics(worker: _HasStats, port: int, host: str = "127.0.0.1") -> WSGIServer | None:
    """Serve ``worker``'s metrics on ``http://host:port/metrics`` from a daemon thread, with a
    registry of its own (no process or platform collectors). Returns the HTTP server (None
    from a prometheus_client too old to hand it back); raises OSError if the address cannot
    be bound."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(worker))
    started: Any = start_http_server(port, addr=host, registry=registry)
    server = started[0] if isinstance(started, tuple) else None
    return server if isinstance(server, WSGIServer) else None
