"""A test round: the detectors' verdict on the live windows, turned into the controller's decision.

Every ``window.test_every_rows`` new rows the round tests the windows: with the sequential alarm
(``drift.alarm.method=sequential``) the alarm's evidence, where a harm alarm stays latched until the
episode it asks for is in flight; otherwise every windowed detector on the last ``window.size`` rows and
the concept detector on the latest labelled window, drift when ``window.votes_required`` voting detectors
flag it. While no episode is in flight the drift onset (which rows a retrain learns from) is
re-estimated each drifted round (``onset``) and forgotten on a quiet one. ``RetrainController``
then decides; the round is remembered (``history``, ``rounds()``), measured, and a confirmed drift
announced once per episode (``drift_detected``). Runs under the state lock.

A mixin of ``DriftMonitor`` (``foundry.drift.monitor``): it uses the monitor's ``windows``,
``controller``, ``counters``, ``history``, the onset fields (``onset_at``, ``onset_detail``,
``_first_flag_at``, ``_harm_latched``), ``last_results``, ``_say`` and ``_monitor_metrics``.
"""

from __future__ import annotations

import logging

from foundry.drift import onset
from foundry.drift.controller import Action, Decision, Phase
from foundry.drift.events import iso

log = logging.getLogger("foundry.drift.monitor")  # the monitor's log, wherever its code lives


class DriftRounds:
    """``_test_round`` and what it reports."""

    def _test_round(self, now: float) -> Decision:
        size = self.cfg.drift.window.size
        alarms: list = []
        if self.sequential:
            alarms, results = self.windows.alarm_round(size)
            votes = sorted({a.family for a in alarms if a.starts_episode})
            # Input alarms while a harm is latched or an episode is in flight say nothing new (the inputs
            # stay shifted; after each harm alarm the evidence restarts and they fire again): counted only.
            self._report_alarms(alarms, events=self.controller.state.phase is Phase.idle and not self._harm_latched)
            # A harm alarm is established evidence (anytime-valid), and the evidence restarts after it: the
            # rounds that follow are quiet although the drift goes on. So the harm stays latched until the
            # episode it asks for is in flight (an episode waiting for labelled rows asks again each round).
            if self.controller.state.phase is not Phase.idle:
                self._harm_latched = False
            self._harm_latched = self._harm_latched or bool(votes)
            drifted = self._harm_latched
        else:
            results = self.windows.test(size, self.cfg.drift.detectors.concept.window_rows)
            votes = sorted({r.detector for r in results if r.vote and r.drift})
            drifted = len(votes) >= self.cfg.drift.window.votes_required
        self.counters["rounds"] += 1
        if self.controller.state.phase in (Phase.idle, Phase.cooldown):  # no episode in flight: the onset may move
            if drifted:
                w = self.windows.window
                if self._first_flag_at is None:
                    since = [a.detail["since"] for a in alarms if a.starts_episode and "since" in a.detail]
                    self._first_flag_at = min(since) if since else float(w.received_at[-size:].min())
                self.onset_at, self.onset_detail = onset.since_first_flag(
                    w.x_num, w.x_cat, w.scores, w.received_at, self.windows.labelled_errors, self._first_flag_at,
                    size)
            else:
                self._forget_onset()
        metrics = self._monitor_metrics()
        for r in results:
            if metrics:
                metrics.result(r.detector, r.p_value, r.statistic, r.drift)
        self.last_results = [{**r.to_dict(), "at": iso(now)} for r in results]
        decision = self.controller.observe(drifted, now)
        self.history.append({"round": self.counters["rounds"], "at": now, "rows": self.counters["rows"],
                             "drifted": drifted, "votes": votes, "phase": self.controller.state.phase.value,
                             "alarms": [a.to_dict() for a in alarms],
                             "reference_version": self.controller.state.reference_version,
                             "results": [r.to_dict() for r in results]})
        log.info("round %d: %s -> %s", self.counters["rounds"],
                 ", ".join(f"{r.detector}={'DRIFT' if r.drift else 'ok'}" for r in results), decision.reason)
        if decision.action is Action.submit and decision.episode_id != self._announced:
            self._announced = decision.episode_id  # once per episode, also while it waits for labels
            evidence = (f"a sequential alarm ({', '.join(a.signal for a in alarms if a.starts_episode)})" if self.sequential
                        else f"{votes} in {self.controller.state.consecutive} rounds in a row")
            self._say("drift_detected", f"drift confirmed by {evidence}; starting episode {decision.episode_id}",
                      episode=decision.episode_id, votes=votes, alarms=[a.to_dict() for a in alarms],
                      results=self.last_results, rows_seen=self.counters["rows"],
                      onset=iso(self.onset_at) if self.onset_at else None, onset_detail=self.onset_detail)
            if metrics:
                metrics.episodes.inc(1, tags={"model": self.model})
        return decision

    def _report_alarms(self, alarms: list, events: bool) -> None:
        """Metrics for every alarm; with ``events``, events for what starts no episode by itself: an input
        drift being watched for harm, and a benign shift (the model handles it: no retrain)."""
        metrics = self._monitor_metrics()
        for a in alarms:
            if metrics:
                metrics.alarm(a.kind, a.family)
            if not events:
                continue
            if a.kind == "input":
                self._say("input_drift", f"input drift on {a.signal} (evidence over {a.run_rows} rows); watching "
                          f"{self.cfg.drift.alarm.benign_after_rows} rows for harm before calling it benign",
                          alarm=a.to_dict())
            elif a.kind == "benign":
                estimate = (f": expected error {a.detail['expected_error']:.3f} against "
                            f"{a.detail['reference_expected_error']:.3f} at training"
                            if "expected_error" in a.detail else "")
                self._say("benign_shift", f"benign shift on {a.signal}: no harm in {a.run_rows} rows{estimate}; "
                          "no retrain, the input signals now compare with these rows", alarm=a.to_dict())

    def _forget_onset(self) -> None:
        self.onset_at = None
        self.onset_detail = None
        self._first_flag_at = None
        self._harm_latched = False
