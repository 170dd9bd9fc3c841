"""Metric helpers: cached label children count into the same series."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest

from worker.metrics import labelled


def test_labelled_children_are_the_metrics_own() -> None:
    registry = CollectorRegistry()
    counter = Counter("t_requests_total", "test", ["method", "status"], registry=registry)
    labelled(counter, "PATCH", "200").inc()
    labelled(counter, "PATCH", "200").inc()
    labelled(counter, "GET", "404").inc()
    assert labelled(counter, "PATCH", "200") is counter.labels("PATCH", "200")
    text = generate_latest(registry).decode()
    assert 't_requests_total{method="PATCH",status="200"} 2.0' in text
    assert 't_requests_total{method="GET",status="404"} 1.0' in text
