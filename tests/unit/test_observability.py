"""Observability without a cluster: the served versions' gauges a replica publishes, the training figures
read from a version's metadata, and the live progress lines of training and tuning."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

from foundry.train.metrics import version_figures


class FakeMetric:
    def __init__(self, name, description="", tag_keys=(), boundaries=None):
        self.name, self.tag_keys, self.values = name, tag_keys, {}

    def set(self, value, tags):
        assert set(tags) == set(self.tag_keys), (self.name, tags)
        self.values[tuple(sorted(tags.items()))] = value

    inc = observe = set


@dataclass(frozen=True)
class Loaded:
    model: str
    version: str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Serving:
    champion: Loaded
    challenger: Loaded | None = None


def _ray_serve_metrics(monkeypatch):
    fake = types.ModuleType("ray.serve.metrics")
    fake.Counter = fake.Gauge = fake.Histogram = FakeMetric
    import ray.serve

    monkeypatch.setitem(sys.modules, "ray.serve.metrics", fake)
    monkeypatch.setattr(ray.serve, "metrics", fake, raising=False)
    from foundry.serving.metrics import RayServeMetrics

    return RayServeMetrics()


def _value(gauge, **tags):
    return gauge.values.get(tuple(sorted(tags.items())))


def test_version_figures_keeps_finite_numbers_only():
    metadata = {"metrics": {"roc_auc": 0.81, "rows": 1200, "log_loss": float("nan"), "note": "x", "ok": True},
                "timings_s": {"prepare": 1.5, "train": 12}}
    assert version_figures(metadata) == ({"roc_auc": 0.81}, {"prepare": 1.5, "train": 12.0})
    assert version_figures({}) == ({}, {})


def test_a_replica_publishes_what_it_serves_and_the_versions_training_figures(monkeypatch):
    m = _ray_serve_metrics(monkeypatch)
    v1 = Loaded("churn", "v1", {"metrics": {"roc_auc": 0.8}, "timings_s": {"train": 10.0}})
    v2 = Loaded("churn", "v2", {"metrics": {"roc_auc": 0.9}, "timings_s": {"train": 11.0}})
    m.serving(Serving(v1))
    assert _value(m._served, model="churn", model_version="v1", role="champion") == 1
    assert _value(m._test_metric, model="churn", model_version="v1", metric="roc_auc") == 0.8
    assert _value(m._stage_seconds, model="churn", model_version="v1", stage="train") == 10.0

    m.serving(Serving(v1, challenger=v2))  # a roll-out: v2 is the challenger
    assert _value(m._served, model="churn", model_version="v2", role="challenger") == 1
    assert _value(m._test_metric, model="churn", model_version="v2", metric="roc_auc") == 0.9

    m.serving(Serving(v2))  # promoted: v1 is no longer served, v2 changes role
    assert _value(m._served, model="churn", model_version="v1", role="champion") == 0
    assert _value(m._served, model="churn", model_version="v2", role="challenger") == 0
    assert _value(m._served, model="churn", model_version="v2", role="champion") == 1
    m.serving(None)
    assert _value(m._served, model="churn", model_version="v2", role="champion") == 0


def test_a_swap_publishes_the_served_versions_and_a_metrics_fault_never_fails_it():
    from foundry.serving.metrics import ServingMetrics
    from foundry.serving.service import PredictionService

    class Broken(ServingMetrics):
        calls = 0

        def serving(self, serving):
            Broken.calls += 1
            raise RuntimeError("metrics agent down")

    service = PredictionService.__new__(PredictionService)  # only what swap() touches
    service.metrics, service._feedback_root = Broken(), None

    class Holder:
        current = None
        serving = None

        def swap(self, spec):
            return "outcome"

    service.holder = Holder()
    assert service.swap(object()) == "outcome" and Broken.calls == 1


def test_epoch_lines_name_the_run_and_the_best_epoch():
    from foundry.train.loop import epoch_line

    line = epoch_line("churn-20261201-ab12", {"epoch": 3, "train_loss": 0.41234, "val_loss": 0.40111,
                                              "best_epoch": 3, "rows_per_s": 12345.6, "early_stopped": False})
    assert line.startswith("[churn-20261201-ab12] epoch   3  train_loss 0.4123  val_loss 0.4011")
    assert "12,346 rows/s" in line and line.endswith("(best)")
    stopped = epoch_line("r", {"epoch": 9, "train_loss": 0.3, "val_loss": 0.5, "best_epoch": 4,
                               "rows_per_s": 10.0, "early_stopped": True})
    assert "(best)" not in stopped and stopped.endswith("early stop")


def test_tune_shows_its_trial_table():
    from foundry.train.tuning import TUNE_VERBOSITY

    assert TUNE_VERBOSITY >= 1  # 0 hides Tune's trial table


def _epoch(run: str, epoch: int) -> str:
    from foundry.train.loop import epoch_line

    return epoch_line(run, {"epoch": epoch, "train_loss": 0.4 + epoch / 100, "val_loss": 0.41, "best_epoch": 0,
                            "rows_per_s": 1000.0 * (epoch + 1), "early_stopped": False})


def _printed(allow_re: str | None) -> list[str]:
    """What a driver prints of two Tune trials' epoch lines (each from its own worker) through Ray's own
    log deduplicator."""
    from ray._private.ray_logging import LogDeduplicator

    dedup = LogDeduplicator(5, allow_re, None, _timesource=lambda: 0.0)
    printed = []
    for epoch in range(3):
        for pid, trial in ((101, "churn-tune_00000"), (202, "churn-tune_00001")):
            batch = {"ip": "127.0.0.1", "pid": pid, "job": "01", "is_err": False, "actor_name": "RayTrainWorker",
                     "task_name": None, "lines": [_epoch(trial, epoch)]}
            printed += [line for out in dedup.deduplicate(batch) for line in out["lines"]]
    return printed + [line for out in dedup.flush() for line in out["lines"]]


def test_ray_never_folds_epoch_lines_in_a_drivers_log():
    """Ray folds worker lines that differ only in numbers; Tune trials' epochs did (their run names differ
    only in numbers). Every driver that connects sets RAY_DEDUP_LOGS_ALLOW_REGEX to NEVER_DEDUPLICATE."""
    from foundry.runtime.connection import NEVER_DEDUPLICATE

    folded = _printed(None)
    assert any("repeated" in line for line in folded)  # what Ray does to them by default
    kept = _printed(NEVER_DEDUPLICATE)
    assert len(kept) == 6 and not any("repeated" in line for line in kept)


def test_connect_sets_the_dedup_exemption_before_ray_reads_it():
    import ast
    import inspect

    from foundry.runtime import connection

    source = inspect.getsource(connection.connect)
    assert "RAY_DEDUP_LOGS_ALLOW_REGEX" in source
    body = [ast.unparse(node) for node in ast.parse(source.strip()).body[0].body]
    set_at = next(i for i, line in enumerate(body) if "RAY_DEDUP_LOGS_ALLOW_REGEX" in line)
    import_at = next(i for i, line in enumerate(body) if line == "import ray")
    assert set_at < import_at  # ray_constants reads it once, at import


def test_ray_trains_report_lines_are_quieted_on_the_logger_ray_uses():
    import logging

    from ray.train.v2._internal.execution import context

    from foundry.train.loop import quiet_ray_train_report_lines

    logger = logging.getLogger(context.__file__)
    before = logger.level
    try:
        logger.setLevel(logging.NOTSET)
        assert logger.isEnabledFor(logging.INFO) or logging.getLogger().level > logging.INFO
        quiet_ray_train_report_lines()
        assert not logger.isEnabledFor(logging.INFO)
        assert context.logger is logger  # the module logs "Reporting training result" through this one
    finally:
        logger.setLevel(before)
