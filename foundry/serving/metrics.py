"""Serving metrics: predictions by model version, rejected requests by reason, batch sizes, and the
versions a replica serves with their training figures.

``ServingMetrics`` records nothing (the plain uvicorn server and unit tests); ``RayServeMetrics``
exports through ``ray.serve.metrics``, which adds the deployment, replica and application tags and
publishes them on each node's metrics agent (scraped by Prometheus / the Ray dashboard's metrics
view, names prefixed ``ray_``). Tag values come from the registry (versions) and from
``errors.reason_of`` (a fixed set), never from client input, so cardinality stays bounded.

Names follow Prometheus' conventions as Ray exports them (checked against Ray 2.60's OpenTelemetry
exporter): a ``Counter("foundry_x")`` is scraped as ``ray_foundry_x_total``; a histogram as
``ray_foundry_x_bucket{le=...}``, ``_sum`` and ``_count``; durations are ``_seconds``. The version label is
``model_version`` on every metric. Every series also carries Ray's ``Component``, ``NodeAddress``,
``SessionName``, ``Version`` and ``WorkerId`` labels (tests/unit/test_grafana_dashboard.py checks the
dashboard's queries against these declarations).

Why the replica publishes training figures (``serving``): the training job's driver exits before
Prometheus would scrape it, so a version's test metrics and stage timings travel in its registry
metadata and the replica that loads the version exports them (``foundry.train.metrics``) for as long as
it lives, with ``foundry_served_version`` saying which versions it serves now (1) or served before (0).
"""

from __future__ import annotations

from typing import Any

from foundry.train.metrics import version_figures

ROLES = ("champion", "challenger")

BATCH_SIZE_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


class ServingMetrics:
    def predictions(self, model: str, version: str, rows: int) -> None:
        pass

    def rejected(self, reason: str) -> None:
        pass

    def batch(self, requests: int, rows: int) -> None:
        pass

    def serving(self, serving: Any) -> None:
        """After a swap: ``serving`` is the replica's ``foundry.serving.holder.Serving`` (or None)."""


def served_roles(serving: Any) -> dict[tuple[str, str], Any]:
    """``{(version, role): LoadedModel}`` of what a ``Serving`` holds (champion, and challenger in a roll-out)."""
    if serving is None:
        return {}
    loaded = {(serving.champion.version, "champion"): serving.champion}
    if serving.challenger is not None:
        loaded[(serving.challenger.version, "challenger")] = serving.challenger
    return loaded


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
        self._served = metrics.Gauge(
            "foundry_served_version", description="1 while this replica serves the version in the role, 0 after.",
            tag_keys=("model", "model_version", "role"))
        self._test_metric = metrics.Gauge(
            "foundry_model_test_metric", description="Test-split metrics of the versions this replica serves or "
            "served (from the registry).", tag_keys=("model", "model_version", "metric"))
        self._stage_seconds = metrics.Gauge(
            "foundry_training_stage_seconds", description="Wall time of each training stage of the versions this "
            "replica serves or served (from the registry).", tag_keys=("model", "model_version", "stage"))
        self._roles: dict[tuple[str, str], str] = {}  # (version, role) -> model, as last published

    def serving(self, serving: Any) -> None:
        """Set the served versions' gauges (1 per version and role, 0 once for what stopped being served) and
        their training figures. Called after each swap and again on every health check: Ray's exporter drops
        a gauge series that is not set again within two report intervals, so values set once would vanish
        from /metrics while the replica still serves that version."""
        now = served_roles(serving)
        for (version, role), model in self._roles.items():
            if (version, role) not in now:
                self._served.set(0, tags={"model": model, "model_version": version, "role": role})
        for (version, role), loaded in now.items():
            self._served.set(1, tags={"model": loaded.model, "model_version": version, "role": role})
            test_metrics, stage_seconds = version_figures(loaded.metadata or {})
            for name, value in test_metrics.items():
                self._test_metric.set(value, tags={"model": loaded.model, "model_version": version, "metric": name})
            for name, value in stage_seconds.items():
                self._stage_seconds.set(value, tags={"model": loaded.model, "model_version": version, "stage": name})
        self._roles = {key: loaded.model for key, loaded in now.items()}

    def predictions(self, model: str, version: str, rows: int) -> None:
        self._predictions.inc(rows, tags={"model": model, "model_version": version})

    def rejected(self, reason: str) -> None:
        self._rejected.inc(1, tags={"reason": reason})

    def batch(self, requests: int, rows: int) -> None:
        self._batch_requests.observe(requests)
        self._batch_rows.observe(rows)
