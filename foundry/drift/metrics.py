"""The monitor's and the sink's metrics (``ray.util.metrics``: Prometheus via the Ray dashboard).

Names are listed in ``cluster/grafana/foundry_dashboard.json`` where they are charted; a test keeps
that dashboard and this module in step, labels included (tests/unit/test_grafana_dashboard.py). Names
follow Prometheus' conventions as Ray exports them: a ``Counter("foundry_x")`` is scraped as
``ray_foundry_x_total`` (Ray's exporter adds the ``ray_`` prefix and the ``_total`` suffix, so the code
names carry neither); a share in [0, 1] ends in ``_ratio``. The monitor is a long-lived actor, so its
figures are scraped for as long as it watches the model.
"""

from __future__ import annotations


class MonitorMetrics:
    def __init__(self, model: str):
        from ray.util.metrics import Counter, Gauge

        self.model = model
        self.p_value = Gauge("foundry_drift_p_value", "Latest p-value per drift detector (windowed tests)",
                             tag_keys=("model", "detector"))
        self.statistic = Gauge("foundry_drift_statistic", "Latest test statistic per drift detector",
                               tag_keys=("model", "detector"))
        self.detected = Counter("foundry_drift_detections", "Test rounds in which a detector flagged drift",
                                tag_keys=("model", "detector"))
        self.episodes = Counter("foundry_drift_episodes", "Drift episodes (drift confirmed, retrain asked for)",
                                tag_keys=("model",))
        self.rows = Counter("foundry_monitor_rows", "Rows received by the monitor: live, label, other_version "
                            "(live rows another version served: stored, not tested)",
                            tag_keys=("model", "kind"))
        self.retrains = Counter("foundry_retrains",
                                "Retrain jobs by outcome: submitted, succeeded, failed, promoted, rejected, exhausted, "
                                "gave_up (no more retrains for a drift: the monitor accepted the new normal)",
                                tag_keys=("model", "outcome"))
        self.alarms = Counter("foundry_drift_alarms", "Sequential alarms by kind: harm, drift (start an episode), "
                              "input (input drift watched for harm), benign (a shift the model handles: no retrain)",
                              tag_keys=("model", "kind", "family"))
        self.rollout_share = Gauge("foundry_rollout_canary_ratio", "The canary's share of requests (0 outside a canary)",
                                   tag_keys=("model",))
        self.rollout_decisions = Counter("foundry_rollout_decisions", "Roll-out steps and decisions: rollout_started, "
                                         "rollout_step, promoted, rolled_back, rollout_expired, rollout_failed, "
                                         "rollout_abandoned, guard_started, guard_passed",
                                         tag_keys=("model", "decision"))
        self.loop_errors = Counter("foundry_monitor_loop_errors", "Monitor rounds that raised (the loop goes on; "
                                   "the last error is in the monitor's status), by exception type",
                                   tag_keys=("model", "error"))

    def result(self, detector: str, p_value: float | None, statistic: float | None, drift: bool) -> None:
        tags = {"model": self.model, "detector": detector}
        if p_value is not None:
            self.p_value.set(p_value, tags=tags)
        if statistic is not None:
            self.statistic.set(statistic, tags=tags)
        if drift:
            self.detected.inc(1, tags=tags)

    def alarm(self, kind: str, family: str) -> None:
        self.alarms.inc(1, tags={"model": self.model, "kind": kind, "family": family})

    def retrain(self, outcome: str) -> None:
        self.retrains.inc(1, tags={"model": self.model, "outcome": outcome})

    def rollout_fraction(self, fraction: float) -> None:
        self.rollout_share.set(fraction, tags={"model": self.model})

    def rollout_decision(self, decision: str) -> None:
        self.rollout_decisions.inc(1, tags={"model": self.model, "decision": decision})

    def loop_error(self, error_type: str) -> None:
        self.loop_errors.inc(1, tags={"model": self.model, "error": error_type})


def sink_counter(model: str):
    """``count(outcome, rows)`` for ``MonitorSink``: rows sent to / dropped before / lost by the monitor."""
    from ray.util.metrics import Counter

    counter = Counter("foundry_monitor_sink_rows", "Live rows a Serve replica sent to, sampled out "
                      "before, or lost on the way to the drift monitor", tag_keys=("model", "outcome"))

    def count(outcome: str, rows: int) -> None:
        if rows:
            counter.inc(rows, tags={"model": model, "outcome": outcome})

    return count
