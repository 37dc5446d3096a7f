"""Prometheus metrics (prometheus-client): jobs by state, documents per stage kind, latency."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _CatalogCollector(Collector):
    def __init__(self, catalog: Any):
        self.catalog = catalog

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily("assay_jobs", "jobs in the catalog by state", labels=["state"])
        for state, n in self.catalog.job_counts().items():
            g.add_metric([state], n)
        yield g
        docs_in = GaugeMetricFamily("assay_stage_docs_in", "documents into each stage kind, over succeeded jobs",
                                    labels=["kind"])
        docs_out = GaugeMetricFamily("assay_stage_docs_out", "documents out of each stage kind, over succeeded jobs",
                                     labels=["kind"])
        for row in self.catalog.stage_docs():
            docs_in.add_metric([row["kind"]], row["docs_in"])
            docs_out.add_metric([row["kind"]], row["docs_out"])
        yield docs_in
        yield docs_out


class Metrics:
    def __init__(self, catalog: Any):
        self.registry = CollectorRegistry()
        self.latency = Histogram("assay_http_request_seconds", "request latency by route template",
                                 ["method", "route", "status"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.registry.register(_CatalogCollector(catalog))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method, route, str(status)).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
