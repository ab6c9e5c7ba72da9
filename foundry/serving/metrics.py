"""Serving metrics: predictions by model version, rejected requests by reason, batch sizes.

``ServingMetrics`` records nothing (the plain uvicorn server and unit tests); ``RayServeMetrics``
exports through ``ray.serve.metrics``, which adds the deployment, replica and application tags and
publishes them on each node's metrics agent (scraped by Prometheus / the Ray dashboard's metrics
view, names prefixed ``ray_``). Tag values come from the registry (versions) and from
``errors.reason_of`` (a fixed set), never from client input, so cardinality stays bounded.
"""

from __future__ import annotations

BATCH_SIZE_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


class ServingMetrics:
    def predictions(self, model: str, version: str, rows: int) -> None:
        pass

    def rejected(self, reason: str) -> None:
        pass

    def batch(self, requests: int, rows: int) -> None:
        pass


class RayServeMetrics(ServingMetrics):
    """Only constructible inside a Ray worker (a Serve replica)."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self._predictions = metrics.Counter(
            "foundry_predictions", description="Rows predicted, by model and version.",
            tag_keys=("model", "model_version"))
        self._rejected = metrics.Counter(
            "foundry_rejected_requests", description="Requests answered with a 4xx, by reason.",
            tag_keys=("reason",))
        self._batch_requests = metrics.Histogram(
            "foundry_batch_requests", description="Requests per inference batch.",
            boundaries=BATCH_SIZE_BOUNDARIES)
        self._batch_rows = metrics.Histogram(
            "foundry_batch_rows", description="Rows per inference batch.",
            boundaries=BATCH_SIZE_BOUNDARIES)

    def predictions(self, model: str, version: str, rows: int) -> None:
        self._predictions.inc(rows, tags={"model": model, "model_version": version})

    def rejected(self, reason: str) -> None:
        self._rejected.inc(1, tags={"reason": reason})

    def batch(self, requests: int, rows: int) -> None:
        self._batch_requests.observe(requests)
        self._batch_rows.observe(rows)
