"""Prometheus metrics of one service (its own registry: several apps in one process never clash)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sparsehybrid_requests",
            "HTTP requests by endpoint and status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "sparsehybrid_errors",
            "Failed requests by endpoint and error class.",
            ["endpoint", "error"],
            registry=self.registry,
        )
        self.search_seconds = Histogram(
            "sparsehybrid_search_seconds",
            "Search latency in the searcher, by mode.",
            ["mode"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "sparsehybrid_request_seconds",
            "Whole-request latency by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.points_written = Counter(
            "sparsehybrid_points_written", "Points written through the service by index jobs.", registry=self.registry
        )
        self.in_flight = Gauge("sparsehybrid_requests_in_flight", "Requests being served.", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
