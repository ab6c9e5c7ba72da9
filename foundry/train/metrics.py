"""Training metrics exported through Ray's metrics agent (Prometheus names get Ray's ``ray_`` prefix).

Names are stable: the Grafana dashboard in ``cluster/grafana/`` and any alert rules refer to them.
Emitted by the training job's driver once per run, so the dashboard shows each new version's test
metrics and how long each stage took next to Ray Train's own worker metrics.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def record_run(model: str, version: str, metrics: dict, timings_s: dict, promoted: bool) -> None:
    """Best effort: a metrics agent that is down must never fail a training job that succeeded."""
    try:
        from ray.util import metrics as ray_metrics

        ray_metrics.Counter("foundry_training_runs", description="Training runs that registered a version.",
                            tag_keys=("model", "promoted")).inc(tags={"model": model, "promoted": str(promoted)})
        test_metric = ray_metrics.Gauge("foundry_model_test_metric",
                                        description="Test-split metrics of each registered version.",
                                        tag_keys=("model", "model_version", "metric"))
        for name, value in metrics.items():
            if isinstance(value, float):
                test_metric.set(value, tags={"model": model, "model_version": version, "metric": name})
        stage = ray_metrics.Gauge("foundry_training_stage_seconds",
                                  description="Wall time of each training stage of the last run.",
                                  tag_keys=("model", "stage"))
        for name, seconds in timings_s.items():
            stage.set(float(seconds), tags={"model": model, "stage": name})
    except Exception as exc:
        log.warning("could not export training metrics: %s", exc)
