"""The monitor's bookkeeping: ``state.json`` after every change, its metrics, and a failed round counted.

``_save_state`` takes a consistent snapshot under the state lock (controller, counters, onset, the
episode's and the roll-out's state, the new normal, the last results and error) and writes it after
releasing it, atomically (``StateFile``): what a restarted monitor resumes from (see the monitor's
docstring). Metrics go through Ray (``MonitorMetrics``), built on first use; outside Ray (unit tests)
there are none and every call is a no-op. A round that raises is counted (``counters["loop_errors"]``,
``status()["last_error"]``, ``foundry_monitor_loop_errors``), and counting never hides the error itself.

A mixin of ``DriftMonitor`` (``foundry.drift.monitor``): it uses the monitor's ``state_file``,
``controller``, ``counters``, ``episodes``, ``rollouts``, the onset fields, ``new_normal``,
``last_results``, ``last_error``, ``clock``, ``model``, ``_lock`` and ``_metrics``.
"""

from __future__ import annotations

import logging

from foundry.drift.events import iso
from foundry.drift.state import encode

log = logging.getLogger("foundry.drift.monitor")  # the monitor's log, wherever its code lives


class Bookkeeping:
    """Persistence, metrics and loop errors of the monitor."""

    def _save_state(self) -> None:
        with self._lock:  # a consistent snapshot; written after the lock
            data = encode({"model": self.model, "controller": self.controller.state.to_dict(),
                           "counters": self.counters, "onset_at": self.onset_at, "onset_detail": self.onset_detail,
                           "first_flag_at": self._first_flag_at, "data_labels_at": self.episodes.data_labels_at,
                           "harm_latched": self._harm_latched, "rollout": self.rollouts.to_dict(),
                           "new_normal": self.new_normal, "last_results": self.last_results,
                           "last_error": self.last_error, "saved_at": iso(self.clock())})
        self.state_file.write(data)

    def _monitor_metrics(self):
        if self._metrics is None:
            try:
                from foundry.drift.metrics import MonitorMetrics

                self._metrics = MonitorMetrics(self.model)
            except Exception:  # outside Ray (unit tests): no metrics
                self._metrics = False
        return self._metrics

    def _count_rows(self, kind: str, n: int) -> None:
        m = self._monitor_metrics()
        if m:
            m.rows.inc(n, tags={"model": self.model, "kind": kind})

    def _retrain_metric(self, outcome: str) -> None:
        m = self._monitor_metrics()
        if m:
            m.retrain(outcome)

    def _loop_error(self, exc: BaseException) -> None:
        with self._lock:
            self.counters["loop_errors"] += 1
            self.last_error = {"type": type(exc).__name__, "message": str(exc)[:1000], "at": iso(self.clock()),
                               "round": self.counters["rounds"]}
        m = self._monitor_metrics()
        if m:
            try:
                m.loop_error(type(exc).__name__)
            except Exception as metric_exc:  # counting must not hide the error itself
                log.warning("cannot count a loop error: %s", metric_exc)
