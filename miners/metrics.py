"""Prometheus metrics of one miner server, in its own registry (several servers per process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Latency buckets from 1 ms (a cached echo) to 60 s (a long generation).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)


class MinerMetrics:
    """Counters and histograms the server updates; ``render()`` gives the text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("ensemble_miner_requests", "Requests answered, by route and status",
                                ["route", "status"], registry=self.registry)
        self.rejections = Counter("ensemble_miner_rejections", "Requests refused, by reason",
                                  ["reason"], registry=self.registry)
        self.latency = Histogram("ensemble_miner_latency_seconds",
                                 "Time from arrival to answer, by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("ensemble_miner_queue_depth", "Requests waiting for a slot",
                                 registry=self.registry)
        self.in_flight = Gauge("ensemble_miner_in_flight", "Requests holding a slot",
                               registry=self.registry)

        # labels() costs a lock and a dict build per call; the label sets are few, so the
        # children are cached here (the hot path calls these on every request).
        self._request_children: dict[tuple[str, str], Any] = {}
        self._latency_children: dict[str, Any] = {}

    def count(self, route: str, status: int | str) -> None:
        """Count one answered request."""
        key = (route, str(status))
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(*key)
        child.inc()

    def observe(self, route: str, seconds: float) -> None:
        """Record one request's latency."""
        child = self._latency_children.get(route)
        if child is None:
            child = self._latency_children[route] = self.latency.labels(route)
        child.observe(seconds)

    def render(self) -> bytes:
        """Return the Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
