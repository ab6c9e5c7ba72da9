"""A drift episode's retrain lifecycle, once the controller decided to retrain, in the order it happens.

``admit`` (is reading the stored labels worth it?), ``submit`` (the attempt's data set, then its job),
``poll`` (the job's status; once it is over, what it did: events, metrics, the controller told), the
roll-out of a promoted version (Serve pointed at it, then the monitor re-based on it) and, when the
controller gives up, ``give_up`` and ``accept_new_normal`` (the detectors re-based on recent labelled
live rows, production unchanged).

Why it is separate: ``DriftMonitor`` is the loop that watches the traffic and owns the state; what one
episode does with the Jobs API, the registry and Serve is a story of its own, and a reader can follow
it here without the windows and detectors around it. It has no back-reference to the monitor: its
collaborators are given explicitly: the ``RetrainController`` (decides; its state is persisted with
the monitor's), the ``RetrainRunner`` (every Jobs API and registry call), ``say`` (writes an event),
``metric`` (the ``foundry_retrains`` counter), ``save_state``, ``locked`` and ``MonitorState`` (what
an episode reads and changes of the monitor's state).

Locking. ``locked()`` takes the monitor's state lock (``DriftMonitor._locked``: events said while it
is held are written once it is released). Every method here runs on the thread running a round, the
only one that changes state, so values are read without the lock and every change is made under it;
the lock is never held across a slow call: ``runner.prepare`` (reads every stored label), ``runner.submit``
and ``runner.poll`` (network), ``rollout.roll_out`` (waits for Serve), ``new_normal`` (storage reads and
writes, a detector build). ``admit`` alone is called under the lock, and only compares numbers.

Waiting for labels. A retrain set that came up short (fewer than ``min_labelled_rows`` labelled live
rows since the onset, or after a rejection fewer than ``more_rows_after_rejection`` new ones) is not
read again on every drifted round: reading is every stored label, one file per ``/feedback`` request.
It is read again once labels reached the monitor since (``ingest_labels``), or once
``drift.retrain.label_recheck_s`` passed since the last read: labels can reach storage without passing
through the monitor (a replica's sink dropped or lost them, or they were stored while the monitor
restarted), and an episode must not wait forever for labels that are already there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from foundry.config import RolloutMode
from foundry.drift import new_normal, reference, rollout
from foundry.drift.controller import Action, Decision, RetrainController
from foundry.drift.events import iso
from foundry.drift.monitor_config import MonitorSections
from foundry.drift.reference import Reference
from foundry.drift.runner import MAX_STATUS_ERRORS, RetrainRunner


@dataclass(frozen=True)
class MonitorState:
    """What an episode reads and changes of the monitor's state (changes only under the lock)."""

    labels_seen: Callable[[], int]  # labels that reached the monitor (its counter, persisted)
    onset: Callable[[], float | None]  # the estimated drift onset: where the retrain set starts
    reference: Callable[[], Reference]  # the reference in use: its sample, its version
    forget_onset: Callable[[], None]  # the episode is over: the next one finds its own onset
    rebase_onto: Callable[[Reference], None]  # a promoted version serves: watch it from now on
    adopt_new_normal: Callable[[Reference, dict[str, Any]], None]  # test against the new-normal reference
    begin_rollout: Callable[[str], None] = lambda version: None  # shadow/canary: the candidate's live trial
    start_guard: Callable[[str, str], None] = lambda new, previous: None  # the new version watched after 100%


class Episodes:
    def __init__(self, cfg: MonitorSections, controller: RetrainController, runner: RetrainRunner, *,
                 locked: Callable[[], AbstractContextManager[None]], say: Callable[..., None],
                 metric: Callable[[str], None], save_state: Callable[[], None], monitor: MonitorState,
                 data_labels_at: int = 0):
        self.cfg = cfg
        self.controller = controller
        self.runner = runner
        self._locked = locked
        self._say = say
        self._metric = metric
        self._save_state = save_state
        self._monitor = monitor
        self.data_labels_at = data_labels_at  # labels seen when the last retrain set was written (persisted)
        self._labels_when_short: int | None = None  # labels seen when a retrain set last came up short
        self._looked_at: float | None = None  # when stored labels were last read for a retrain set
        self._waiting_note: str | None = None
        self._new_normal_tried: int | None = None  # labels seen when a new-normal re-base last failed
        self._new_normal_note: str | None = None

    # ---- submitting ------------------------------------------------------------------------------------
    def admit(self, decision: Decision, now: float) -> bool:
        """Under the lock, as the controller decides to submit: undo it now when reading the stored labels
        again would only repeat the last short read (see "Waiting for labels" above)."""
        min_new = int(decision.detail.get("min_new_rows", 0))
        labels = self._monitor.labels_seen()
        recheck = self._looked_at is None or now - self._looked_at >= self.cfg.drift.retrain.label_recheck_s
        if not recheck and (self._labels_when_short == labels or labels - self.data_labels_at < min_new):
            self.controller.cancel()
            self._say_waiting(decision.episode_id, decision.attempt, min_new)
            return False
        return True

    def submit(self, decision: Decision, now: float) -> None:
        """Write the attempt's data set, then submit its job (both without the lock); too few rows: undo."""
        episode = decision.episode_id
        min_new = int(decision.detail.get("min_new_rows", 0))
        with self._locked():  # what the slow part needs
            labels, ref, since = self._monitor.labels_seen(), self._monitor.reference(), self._monitor.onset()
            reference_version = self.controller.state.reference_version
        data = self.runner.prepare(episode, ref.sample, since, decision.data_generation or 1, min_new)
        with self._locked():
            self._looked_at = now
            self._labels_when_short = None if data is not None else labels
            if data is None:
                self.controller.cancel()
                self._say_waiting(episode, decision.attempt, min_new)
                return
            if decision.attempt == 1 or min_new:
                self.data_labels_at = labels  # a new data set: the next one needs labels after it
        self._save_state()  # the submission id is on storage before the job exists: a restart re-finds it
        sub = self.runner.submit(decision, reference_version, data)
        if sub.error is not None:
            self._say("retrain_failed", f"could not submit {decision.submission_id}: {sub.error}",
                      episode=episode, attempt=decision.attempt, submission_id=decision.submission_id)
            self._metric("failed")
            with self._locked():
                finished = self.controller.job_finished("failed", now, f"submit failed: {sub.error}")
            self._after_job(finished, now)
            return
        self._metric("submitted")
        new = f", {data.new_rows} of them new since the rejected attempt" if data.new_rows is not None else ""
        self._say("retrain_submitted", f"{decision.reason}: submitted {sub.submission_id} "
                  f"({data.rows} rows: {data.labelled_live_rows} labelled live + {data.reference_rows} "
                  f"reference{new})" + (" (it already existed)" if sub.already_existed else ""),
                  episode=episode, attempt=decision.attempt, submission_id=sub.submission_id,
                  data=data.uri, data_generation=decision.data_generation, rows=data.rows,
                  new_rows=data.new_rows, overrides=sub.overrides, submit_s=round(sub.seconds, 3))

    def _say_waiting(self, episode: str, attempt: int, min_new: int) -> None:
        if min_new:
            note = f"attempt {attempt} of episode {episode} waits for {min_new} labelled live rows that the " \
                   "rejected attempt's data set did not have"
        else:
            note = f"episode {episode} waits for labels: fewer than {self.cfg.drift.retrain.min_labelled_rows} " \
                   "labelled live rows since the drift began"
        if self._waiting_note != note:
            onset = self._monitor.onset()
            self._say("retrain_waiting", note, episode=episode, attempt=attempt, onset=iso(onset) if onset else None)
            self._waiting_note = note

    # ---- the running job ---------------------------------------------------------------------------------
    def poll(self, now: float) -> None:
        """One look at the running attempt (without the lock); once it is over, what it did."""
        with self._locked():
            s = self.controller.state
            sid, submitted_at, attempt = s.submission_id, s.submitted_at, s.attempt
            episode = self.controller.current_episode_id
        poll = self.runner.poll(sid, submitted_at, now, episode)
        if poll.unanswered is not None:
            self._say("retrain_status_unknown", f"{sid}: the Jobs API did not answer {MAX_STATUS_ERRORS} polls "
                      f"in a row ({poll.unanswered}); waiting for it", episode=episode, submission_id=sid)
        outcome = poll.outcome
        if outcome is None:
            return
        if outcome.outcome == "failed":
            self._metric("failed")
            self._say("retrain_failed", f"{sid}: {outcome.detail}" + (f": {poll.cause}" if poll.cause else ""),
                      episode=episode, submission_id=sid, attempt=attempt, cause=poll.cause)
        else:
            self._metric("succeeded")
            self._say("retrain_finished", f"{sid} registered {outcome.version}: {outcome.detail}",
                      episode=episode, submission_id=sid, version=outcome.version, metrics=outcome.metrics,
                      champion_metrics=outcome.champion_metrics)
        with self._locked():
            decision = self.controller.job_finished(outcome.outcome, now, outcome.detail, no_gain=outcome.no_gain,
                                                    retryable=poll.retryable)
        direct = self.cfg.promotion.rollout is RolloutMode.direct
        if outcome.outcome == "promoted" and not direct:
            self._metric("candidate")
            self._say("candidate", f"{outcome.version} passed the gate and is the {self.cfg.promotion.candidate_alias}: "
                      f"its {self.cfg.promotion.rollout.value} roll-out on live traffic decides ({outcome.detail})",
                      episode=episode, version=outcome.version)
        elif outcome.outcome == "promoted":
            self._metric("promoted")
            self._say("promoted", f"{outcome.version} is the new {self.cfg.promotion.alias}: {outcome.detail}",
                      episode=episode, version=outcome.version)
        elif outcome.outcome == "rejected":
            self._metric("rejected")
            self._say("rejected", f"{outcome.version} not promoted, {self.cfg.promotion.alias} unchanged: "
                      f"{outcome.detail}", episode=episode, version=outcome.version)
        self._after_job(decision, now)
        if outcome.outcome == "promoted" and direct:
            self._roll_out(outcome.version, episode)
        elif outcome.outcome == "promoted":
            self._monitor.begin_rollout(outcome.version)

    def _after_job(self, decision: Decision, now: float) -> None:
        if decision.action in (Action.exhausted, Action.finished):
            with self._locked():
                self._monitor.forget_onset()  # the episode is over: the next one finds its own onset
        if decision.action is Action.exhausted:
            self._metric("exhausted")
            self._say("retries_exhausted", decision.reason, episode=decision.episode_id, attempt=decision.attempt)
        elif decision.action is Action.gave_up:
            self.give_up(decision, now)
        elif decision.detail.get("retry_in_s") is not None:
            self._say("retrain_retry_scheduled", decision.reason, episode=decision.episode_id,
                      attempt=decision.attempt, retry_in_s=decision.detail["retry_in_s"])

    def _roll_out(self, version: str, episode: str) -> None:
        """Point Serve at the promoted version (``rollout``, without the lock), then re-base on it."""
        done = rollout.roll_out(self.cfg, version)
        if done.error is not None:
            self._say("rollout_failed", f"could not point Serve app {self.cfg.serve.app_name!r} at {version}: "
                      f"{done.error}; still monitoring against {self._monitor.reference().suite.version}",
                      episode=episode, version=version)
        if not done.done:
            return
        self._say("rolled_out", f"Serve app {self.cfg.serve.app_name!r} serves {version} (in place)",
                  episode=episode, version=version, seconds=done.seconds)
        if done.load_error is not None:
            raise done.load_error
        previous = self.controller.state.reference_version
        with self._locked():
            self._monitor.rebase_onto(done.reference)
        self._say("rebased", f"detectors re-based from {previous} to {version}'s reference sample",
                  episode=episode, version=version, previous=previous)
        if previous:
            self._monitor.start_guard(version, previous)

    # ---- giving up: the new normal -----------------------------------------------------------------------
    def give_up(self, decision: Decision, now: float) -> None:
        self._metric("gave_up")
        self._say("gave_up", f"{decision.reason}; no more retrains for this drift: accepting the new "
                  "normal (the detectors re-base on recent labelled live rows, production unchanged)",
                  episode=decision.episode_id, attempts=decision.attempt, **decision.detail)
        self.accept_new_normal(now)

    def accept_new_normal(self, now: float) -> None:
        """Re-base the detectors on recent labelled live rows with the production model (``new_normal``);
        on failure (too few rows yet) the controller stays in ``gave_up``, retraining nothing, and this is
        tried again once more labels arrived."""
        labels = self._monitor.labels_seen()
        if self._new_normal_tried == labels:
            return
        version = self.controller.state.reference_version
        episode = self.controller.current_episode_id
        try:
            rows = new_normal.recent_rows(self.cfg, since=self._monitor.onset())
            if len(rows) < new_normal.min_rows(self.cfg.drift):
                raise ValueError(f"{len(rows)} labelled live rows since the drift began; it needs "
                                 f"{new_normal.min_rows(self.cfg.drift)}")
            at = time.time()  # live rows are stamped with wall time: those after this are tested against it
            uri = new_normal.write_reference(self.cfg, f"{episode}-{int(at)}", rows)
            baseline = {"uri": uri, "version": version, "at": at, "episode": episode, "rows": len(rows)}
            ref = reference.load(self.cfg, version, baseline)
        except Exception as exc:
            note = f"cannot accept the new normal for {version} yet ({type(exc).__name__}: {exc}); no retrains " \
                   "meanwhile"
            with self._locked():
                self._new_normal_tried = labels
                if self._new_normal_note != note:
                    self._say("rebase_failed", note, version=version, previous=version, reason="new_normal",
                              episode=episode)
                    self._new_normal_note = note
            return
        with self._locked():
            self._monitor.adopt_new_normal(ref, baseline)
            self._new_normal_tried = None
            self.controller.accept_new_normal(now)
        self._say("rebased", f"accepted the new normal: detectors of {version} re-based on {len(rows)} "
                  f"recent labelled live rows (the drift of {episode} could not be healed); no new episode "
                  f"before {iso(self.controller.state.wait_until)}", version=version, previous=version,
                  reason="new_normal", episode=episode, rows=len(rows), reference=uri)


__all__ = ["Episodes", "MonitorState"]
