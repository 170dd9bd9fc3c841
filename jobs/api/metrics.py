"""The API's own Prometheus metrics, served at `/metrics` beside the process's defaults."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from jobs.store.interface import COUNTED, BatchStatus


class BatchItemsCollector(Collector):
    """Items by state for recent batches, read from the report store at scrape time."""

    def __init__(self, list_recent: Callable[[], list[BatchStatus]]) -> None:
        self._list_recent = list_recent

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "phonebatch_batch_items",
            "Items of recent batches by state.",
            labels=["batch_id", "state"],
        )
        for batch in self._list_recent():
            counts = batch.counts.as_dict()
            for state in COUNTED:
                family.add_metric([batch.batch_id, state], counts[state])
        yield family
