"""Prometheus metrics of one router and its gateway, in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["RouterMetrics"]

# Loopback answers take a few milliseconds, model answers up to a minute.
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0)


class RouterMetrics:
    """Counters and histograms of requests, attempts, votes, audits and the gateway."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("ensemble_router_requests", "Routed requests, by outcome",
                                ["strategy", "outcome"], registry=r)
        self.attempts = Counter("ensemble_router_attempts", "Requests sent to miners",
                                ["role", "outcome"], registry=r)
        self.latency = Histogram("ensemble_router_latency_seconds", "Whole-request latency",
                                 ["strategy"], buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("ensemble_router_ttft_seconds", "Time to the first delivered text",
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.budget_denied = Counter("ensemble_router_budget_denied",
                                     "Failovers or hedges refused by the retry budget",
                                     ["kind"], registry=r)
        self.votes = Counter("ensemble_router_votes", "Ensemble and audit votes, by verdict",
                             ["kind", "verdict"], registry=r)
        self.eligible = Gauge("ensemble_router_eligible_miners", "Miners in the candidate pool",
                              registry=r)
        self.blocked = Gauge("ensemble_router_ejected_miners", "Miners ejected by the breaker",
                             registry=r)
        self.block = Gauge("ensemble_router_block", "Metagraph block of the pool", registry=r)
        self.loop_stalled = Gauge("ensemble_router_loop_stalled_seconds",
                                  "Seconds the router's own event loop stood still (not "
                                  "charged to miners' deadlines)", registry=r)
        self.http = Counter("ensemble_gateway_http_requests", "Gateway HTTP answers",
                            ["route", "status"], registry=r)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
