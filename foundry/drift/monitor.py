"""``DriftMonitor``: the Ray actor that watches one served model and heals it.

One per model, named ``<drift.monitor.name_prefix>-<model>`` in namespace ``drift.monitor.namespace``,
detached and restartable (``jobs.monitor`` creates it). It is a threaded actor: ``ingest`` calls
from every Serve replica run concurrently (each checks its batch (``LiveBatch``), persists it, then
queues it), while one background thread does the work in rounds of ``poll_interval_s``:

1. absorb queued live rows into the windows (and feed the online detectors) and match labels to
   the predictions they judge (the error stream);
2. every ``window.test_every_rows`` new rows, test the last ``window.size`` rows with every windowed
   detector and the latest labelled window with the concept detector; the round "votes" drift when
   ``window.votes_required`` voting detectors flag it, and ``RetrainController`` decides;
3. submit / poll the retrain job through the Jobs API; when it finishes, record the outcome and,
   on promotion, point Serve at the new version (``user_config``, no replica restart) and re-base
   the detectors on the new version's reference sample;
4. when the controller gives up (``max_attempts`` or ``max_episodes``, see ``controller``), accept the
   new normal: rebuild the detectors on recent labelled live rows with the production model
   (``new_normal``), so the drift nobody could heal stops raising alarms.

This class is the thin loop around the parts that do the work, each in its own module and each
readable alone (the way Ray Serve's controller is a loop over state managers): ``batch`` (what Serve
hands over), ``windows`` (live windows, label matching, which version served each row), ``reference``
(a version's detectors, loaded in one piece), ``controller`` (when to retrain), ``runner`` (the Jobs
API: submit, poll, stop, outcome, cause), ``rollout`` (Serve pointed at a promoted version),
``new_normal`` (giving up), ``onset`` (where the drift began) and ``state`` (``state.json``).

The drift onset (which rows a retrain learns from) is a change-point estimate (``onset``) over one
window before the first flagged window and every row since, re-estimated each drifted round until
an episode is in flight; when no clear change shows, the oldest row of the first flagged window.

The windows hold only rows the reference version served. When Serve answers with another version for
``window.test_every_rows`` rows in a row (a roll-out or rollback made outside this monitor, or a
promotion with ``drift.retrain.rollout=false`` that an operator rolled out later) and no retrain is in
flight, the monitor re-bases on that version (``drift.monitor.follow_served_version``): testing one
version's traffic against another version's reference would report the swap itself as drift.

Locking. One round runs at a time (``_round_lock``: the loop thread, or a ``flush()`` call), and only
the thread running it changes the monitor's state, always under ``_lock``; ``status()`` and
``rounds()`` only read, under ``_lock``. ``_lock`` is never held across I/O: a round takes it to
drain the queues and update the windows, to run a test round and take the controller's decision, and
to apply a result; between those it is released for the slow calls (job submission and polling,
reading stored labels into a retrain set, loading a version's detectors, a roll-out that waits for
Serve) and events and ``state.json`` are written after it is released. So ``status()`` answers within
milliseconds whatever the Jobs API or Serve does. What a reader can see between two sections is a
state the round is about to act on, never a torn one: e.g. an attempt "running" while its data set is
being written (cancelled again if too few labels turn up), or empty windows between a re-base and the
reload of the new version's stored rows. Since nothing else writes, a round may read its own state
without the lock. ``ingest``/``ingest_labels`` touch only storage and the thread-safe queues.

A round that raises is counted (``counters["loop_errors"]``, ``status()["last_error"]``, metric
``foundry_monitor_loop_errors``) and the loop goes on next round; the state it had applied stays.

What survives a restart (``state.json``, rewritten atomically after every change): the controller
(phase, episode, attempt, data generation, outcomes, episode starts, submission id, clocks), the
reference version, the new-normal reference in use (if any), the onset, counters, the last results
and the last loop error (a monitor that gave up never resumes retraining for that drift). The windows
are rebuilt from the persisted live rows and labels, so a restarted monitor tests the same data its
predecessor would have.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from foundry import config as foundry_config
from foundry.config import FoundryConfig, Task
from foundry.drift import new_normal, onset, reference, rollout
from foundry.drift.batch import LiveBatch
from foundry.drift.controller import Action, ControllerState, Decision, Phase, RetrainController
from foundry.drift.events import EventLog, read_events
from foundry.drift.live_store import LiveStore
from foundry.drift.reference import Reference
from foundry.drift.runner import MAX_STATUS_ERRORS, RetrainRunner
from foundry.drift.state import STATE_FILE, StateFile, encode, state_uri
from foundry.drift.windows import LiveWindows, VersionTracker
from foundry.drift.windows import encode as encode_rows

log = logging.getLogger(__name__)

_EPISODE_NUMBER = re.compile(r"-e(\d+)$")


class DriftMonitor:
    """Plain class; ``jobs.monitor`` turns it into the detached actor (``ray.remote(DriftMonitor)``)."""

    def __init__(self, config_data: dict[str, Any], clock=time.time, start: bool = True):
        self.cfg: FoundryConfig = foundry_config.from_container(config_data)
        self.model = self.cfg.model_name
        self.clock = clock
        self.events = EventLog(self.cfg.storage.root, self.model)
        self.live = LiveStore(self.cfg.storage.root, self.model)
        self.state_file = StateFile(self.cfg.storage.root, self.model)
        self.runner = RetrainRunner(self.cfg)
        self.versions = VersionTracker()
        self._features = [(f.name, f.type.value == "numeric") for f in self.cfg.data.features]
        self._queue: queue.Queue = queue.Queue()
        self._labels: queue.Queue = queue.Queue()
        self._lock = threading.RLock()  # the state; held briefly, never across I/O (module docstring)
        self._round_lock = threading.Lock()  # one round at a time
        self._held = 0  # depth of _locked() sections (round thread only)
        self._outbox: list[tuple[str, str, dict]] = []  # events said under the lock, written after it
        self._stop = threading.Event()
        self._metrics = None
        self._waiting_note: str | None = None
        self._announced: str | None = None  # the episode whose drift_detected event is written
        self._labels_when_short: int | None = None  # labels seen when a retrain set last came up short
        self._new_normal_tried: int | None = None  # labels seen when a new-normal re-base last failed
        self._new_normal_note: str | None = None
        # Recent rounds in memory, for plots and dashboards that poll ``rounds()`` (lost on restart).
        self.history: deque[dict] = deque(maxlen=self.cfg.drift.monitor.history_rounds)
        self.counters = {"rows": 0, "labels": 0, "labels_matched": 0, "rounds": 0, "other_version_rows": 0,
                         "loop_errors": 0}

        saved = self.state_file.read()
        self.controller = RetrainController(self.cfg.drift.retrain, self.model, self.cfg.drift.window.consecutive,
                                            ControllerState.from_dict(saved.get("controller", {})))
        # Episode numbers never go back, even when the state file was lost: the events remember them.
        self.controller.state.episode = max(self.controller.state.episode, self._last_episode_number())
        self.counters.update(saved.get("counters", {}))
        self.onset_at: float | None = saved.get("onset_at")
        self.onset_detail: dict[str, Any] | None = saved.get("onset_detail")
        # The oldest row of the first window flagged while no episode was in flight (the onset search's anchor).
        self._first_flag_at: float | None = saved.get("first_flag_at")
        self._data_labels_at: int = saved.get("data_labels_at", 0)  # labels seen when the last retrain set was written
        # The new-normal reference in use (after giving up): {"uri", "version", "at"} or None.
        self.new_normal: dict[str, Any] | None = saved.get("new_normal")
        self.last_results: list[dict] = saved.get("last_results", [])
        self.last_error: dict[str, Any] | None = saved.get("last_error")  # {"type", "message", "at", "round"}
        version = self.controller.state.reference_version or reference.served_version(self.cfg)
        try:
            ref = reference.load(self.cfg, version, self._baseline_for(version))
        except Exception as exc:
            if self._baseline_for(version) is None:
                raise
            log.error("cannot load the new-normal reference %s (%s); using %s's own", self.new_normal, exc, version)
            self.new_normal = None
            ref = reference.load(self.cfg, version)
        self.windows = LiveWindows(self.cfg, ref.suite)
        self._use(ref)
        restored = self._restore_windows()
        self.events.write("monitor_started", f"monitoring {self.model} against {version} "
                          f"({'restored state, ' if saved else ''}{restored} live rows reloaded)",
                          reference_version=version, restored=bool(saved), phase=self.controller.state.phase.value,
                          submission_id=self.controller.state.submission_id)
        self._save_state()
        self._thread = None
        if start:
            self._thread = threading.Thread(target=self._run, name="foundry-drift-monitor", daemon=True)
            self._thread.start()

    def _last_episode_number(self) -> int:
        episodes = (e.get("episode") or "" for e in read_events(self.cfg.storage.root, self.model))
        numbers = [int(m.group(1)) for ep in episodes if (m := _EPISODE_NUMBER.search(ep))]
        return max(numbers, default=0)

    @property
    def _client(self):
        """The Jobs API client (the runner's; tests put a fake one here)."""
        return self.runner.client

    @_client.setter
    def _client(self, client) -> None:
        self.runner.client = client

    # ---- the public surface (actor methods) ------------------------------------------------------------
    def ingest(self, batch: LiveBatch | dict[str, Any]) -> int:
        """Check one batch of live rows (``LiveBatch.from_dict``: Serve's sink sends the dict), persist
        it, then queue it for the detectors; returns the rows taken. Never takes the state lock."""
        rows = LiveBatch.from_dict(batch)
        frame = rows.frame(self._features, self.cfg.data.task is Task.regression)
        self.live.write(frame)
        self._queue.put((rows, frame))
        return len(frame)

    def ingest_labels(self, request_ids: list[str], labels: list[Any]) -> int:
        """Labels are already on storage (``POST /feedback`` wrote them); here they feed the error stream."""
        self._labels.put((list(request_ids), list(labels)))
        return len(request_ids)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"model": self.model, "reference_version": self.controller.state.reference_version,
                    "controller": self.controller.state.to_dict(), "counters": dict(self.counters),
                    "window_rows": len(self.windows.window), "labelled_window_rows": len(self.windows.errors),
                    "onset_at": _iso(self.onset_at) if self.onset_at else None, "onset_detail": self.onset_detail,
                    "new_normal": self.new_normal, "queued_batches": self._queue.qsize(),
                    "last_results": self.last_results, "last_error": self.last_error}

    def rounds(self, after: int = 0) -> list[dict[str, Any]]:
        """The remembered test rounds numbered above ``after`` (oldest first): poll with the last one seen."""
        with self._lock:
            return [r for r in self.history if r["round"] > after]

    def flush(self) -> dict[str, Any]:
        """Run a round now (tests, benchmarks); returns the status."""
        self.step()
        return self.status()

    def stop(self) -> None:
        self._stop.set()

    # ---- the loop ----------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.cfg.drift.monitor.poll_interval_s):
            try:
                self.step()
            except Exception:
                log.exception("monitor round failed (counted in loop_errors; retried next round)")

    def step(self) -> None:
        """One round (the loop calls it; tests may call it directly with ``start=False``). A round that
        raises is counted and re-raised."""
        with self._round_lock:
            try:
                self._round()
            except Exception as exc:
                self._loop_error(exc)
                raise

    def _round(self) -> None:
        now = self.clock()
        with self._locked():
            drained = self._drain()
        self._follow_served_version()
        with self._locked():
            decision = None
            if drained and self.windows.due(self.cfg.drift.window.test_every_rows, self.cfg.drift.window.size):
                decision = self._test_round(now)
            if decision is not None and decision.action is Action.submit and not self._admit(decision):
                decision = None
        if decision is not None and decision.action is Action.submit:
            self._submit(decision, now)
        elif decision is not None and decision.action is Action.gave_up:
            self._give_up(decision, now)
        if self.controller.state.phase is Phase.gave_up:  # its re-base failed, or a restart came between
            self._accept_new_normal(now)
        with self._locked():
            decision = self.controller.tick(now)
            submit = decision.action is Action.submit and self._admit(decision)
        if submit:
            self._submit(decision, now)
        if self.controller.state.phase is Phase.running:
            self._poll_job(now)
        self._save_state()

    def _loop_error(self, exc: BaseException) -> None:
        with self._lock:
            self.counters["loop_errors"] += 1
            self.last_error = {"type": type(exc).__name__, "message": str(exc)[:1000], "at": _iso(self.clock()),
                               "round": self.counters["rounds"]}
        m = self._monitor_metrics()
        if m:
            try:
                m.loop_error(type(exc).__name__)
            except Exception as metric_exc:  # counting must not hide the error itself
                log.warning("cannot count a loop error: %s", metric_exc)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the state lock to change state; events said meanwhile are written once it is released."""
        outbox: list[tuple[str, str, dict]] = []
        try:
            with self._lock:
                self._held += 1
                try:
                    yield
                finally:
                    self._held -= 1
                    if not self._held:
                        outbox, self._outbox = self._outbox, []
        finally:
            for kind, message, fields in outbox:
                self.events.write(kind, message, **fields)

    def _say(self, kind: str, message: str, **fields: Any) -> None:
        """Write an event (after the lock, if it is held)."""
        if self._held:
            self._outbox.append((kind, message, fields))
        else:
            self.events.write(kind, message, **fields)

    # ---- live rows and labels (under the lock) -----------------------------------------------------------
    def _drain(self) -> int:
        n = 0
        reference_version = self.controller.state.reference_version
        while True:
            try:
                batch, frame = self._queue.get_nowait()
            except queue.Empty:
                break
            mine = self.versions.track(reference_version, batch.model_version, batch.received_at)
            self.counters["labels_matched"] += self.windows.absorb_batch(batch, frame, mine)
            self.counters["rows"] += len(frame)
            others = int((~mine).sum())
            if others:
                self.counters["other_version_rows"] += others
                self._count_rows("other_version", others)
            self._count_rows("live", len(frame))
            n += len(frame)
        while True:
            try:
                ids, labels = self._labels.get_nowait()
            except queue.Empty:
                break
            self.counters["labels"] += len(ids)
            self.counters["labels_matched"] += self.windows.match_labels(ids, labels)
            self._count_rows("label", len(ids))
            n += len(ids)
        return n

    def _test_round(self, now: float) -> Decision:
        size = self.cfg.drift.window.size
        results = self.windows.test(size, self.cfg.drift.detectors.concept.window_rows)
        self.counters["rounds"] += 1
        votes = sorted({r.detector for r in results if r.vote and r.drift})
        drifted = len(votes) >= self.cfg.drift.window.votes_required
        if self.controller.state.phase in (Phase.idle, Phase.cooldown):  # no episode in flight: the onset may move
            if drifted:
                w = self.windows.window
                if self._first_flag_at is None:
                    self._first_flag_at = float(w.received_at[-size:].min())
                self.onset_at, self.onset_detail = onset.since_first_flag(
                    w.x_num, w.x_cat, w.scores, w.received_at, self.windows.labelled_errors, self._first_flag_at,
                    size)
            else:
                self._forget_onset()
        metrics = self._monitor_metrics()
        for r in results:
            if metrics:
                metrics.result(r.detector, r.p_value, r.statistic, r.drift)
        self.last_results = [{**r.to_dict(), "at": _iso(now)} for r in results]
        decision = self.controller.observe(drifted, now)
        self.history.append({"round": self.counters["rounds"], "at": now, "rows": self.counters["rows"],
                             "drifted": drifted, "votes": votes, "phase": self.controller.state.phase.value,
                             "reference_version": self.controller.state.reference_version,
                             "results": [r.to_dict() for r in results]})
        log.info("round %d: %s -> %s", self.counters["rounds"],
                 ", ".join(f"{r.detector}={'DRIFT' if r.drift else 'ok'}" for r in results), decision.reason)
        if decision.action is Action.submit and decision.episode_id != self._announced:
            self._announced = decision.episode_id  # once per episode, also while it waits for labels
            self._say("drift_detected", f"drift confirmed by {votes} in {self.controller.state.consecutive} rounds "
                      f"in a row; starting episode {decision.episode_id}", episode=decision.episode_id, votes=votes,
                      results=self.last_results, rows_seen=self.counters["rows"],
                      onset=_iso(self.onset_at) if self.onset_at else None, onset_detail=self.onset_detail)
            if metrics:
                metrics.episodes.inc(1, tags={"model": self.model})
        return decision

    def _forget_onset(self) -> None:
        self.onset_at = None
        self.onset_detail = None
        self._first_flag_at = None

    # ---- the reference -----------------------------------------------------------------------------------
    def _baseline_for(self, version: str) -> dict[str, Any] | None:
        return self.new_normal if self.new_normal and self.new_normal.get("version") == version else None

    def _use(self, ref: Reference) -> None:
        """Test against ``ref`` from now on, with fresh windows (under the lock)."""
        self.ref = ref
        self.windows.reset(ref.suite)
        if not self.controller.state.reference_version:
            self.controller.rebase(ref.version)

    def _rebase_onto(self, ref: Reference) -> None:
        """Watch ``ref``'s version from now on (under the lock)."""
        self._use(ref)
        self.controller.rebase(ref.version)
        self.new_normal = None
        self._forget_onset()
        self.versions.rebased(time.time())  # rows answered before now belong to the previous version's world

    def _restore_windows(self) -> int:
        """Rebuild windows and the error stream from storage (after a restart or a re-base)."""
        version = self.controller.state.reference_version
        baseline = self._baseline_for(version)
        after = pd.Timestamp(baseline["at"], unit="s", tz="UTC") if baseline else None

        def keep(f: pd.DataFrame) -> pd.DataFrame:
            # Only rows the reference version served (older ones belong to the world before the last
            # re-base), and after a new normal only rows received since (the earlier ones are its reference).
            mask = f["model_version"] == version
            if after is not None:
                mask &= f["received_at"] >= after
            return f[mask]

        recent = self.live.read_recent(self.cfg.drift.monitor.retain_rows, where=keep)
        rows = labels = None
        if not recent.empty:
            from foundry.serving.feedback import read_feedback

            rows = encode_rows(recent, self.ref.predictor)
            labels = read_feedback(self.cfg.storage.root, self.model)
        with self._locked():
            # A batch written before this read may still be queued (or be re-sent by Ray after a restart).
            self.windows.restored_ids = set(recent["request_id"]) if not recent.empty else set()
            if rows is None:
                return 0
            self.counters["labels_matched"] += self.windows.absorb_encoded(rows)
            if not labels.empty:
                self.windows.match_labels(labels["request_id"].tolist(), labels["label"].tolist())
            self.windows.rows_since_test = 0
            self.windows.labels_since_test = 0
        return len(recent)

    def _follow_served_version(self) -> None:
        """Re-base on the version Serve has answered with for a while (see the module docstring)."""
        version = self.versions.to_follow(self.cfg.drift.window.test_every_rows)
        if (version is None or not self.cfg.drift.monitor.follow_served_version
                or self.controller.state.phase not in (Phase.idle, Phase.cooldown, Phase.gave_up)):
            return
        run = self.versions.other_run[1]
        previous = self.controller.state.reference_version
        try:
            ref = reference.load(self.cfg, version)
        except Exception as exc:  # not in this registry (another model's?), or its files fail the checksums
            with self._locked():
                self.versions.unloadable.add(version)
            self._say("rebase_failed", f"Serve answers with {version}, which cannot be loaded from the "
                      f"registry ({type(exc).__name__}: {exc}); still testing against {previous}",
                      version=version, previous=previous)
            return
        with self._locked():
            self._rebase_onto(ref)
        restored = self._restore_windows()
        self._say("rebased", f"Serve answers with {version} ({run} live rows in a row), not {previous}: it "
                  f"was swapped outside this monitor; detectors re-based on {version}'s reference sample "
                  f"({restored} of its live rows reloaded)", version=version, previous=previous,
                  reason="served_version_changed", rows=run)

    # ---- retrains ------------------------------------------------------------------------------------------
    def _admit(self, decision: Decision) -> bool:
        """Under the lock, as the controller decides to submit: still short of labels and none (or too few
        to make up the new rows) arrived since the last look? Then undo it now: reading every stored label
        again (one file per /feedback request) would only repeat it."""
        min_new = int(decision.detail.get("min_new_rows", 0))
        labels = self.counters["labels"]
        if self._labels_when_short == labels or labels - self._data_labels_at < min_new:
            self.controller.cancel()
            self._say_waiting(decision.episode_id, decision.attempt, min_new)
            return False
        return True

    def _submit(self, decision: Decision, now: float) -> None:
        episode = decision.episode_id
        min_new = int(decision.detail.get("min_new_rows", 0))
        with self._locked():  # what the slow part needs
            labels, sample, since = self.counters["labels"], self.ref.sample, self.onset_at
            reference_version = self.controller.state.reference_version
        data = self.runner.prepare(episode, sample, since, decision.data_generation or 1, min_new)
        with self._locked():
            self._labels_when_short = None if data is not None else labels
            if data is None:
                self.controller.cancel()
                self._say_waiting(episode, decision.attempt, min_new)
                return
            if decision.attempt == 1 or min_new:
                self._data_labels_at = labels  # a new data set: the next one needs labels after it
        self._save_state()  # the submission id is on storage before the job exists: a restart re-finds it
        sub = self.runner.submit(decision, reference_version, data)
        if sub.error is not None:
            self._say("retrain_failed", f"could not submit {decision.submission_id}: {sub.error}",
                      episode=episode, attempt=decision.attempt, submission_id=decision.submission_id)
            self._retrain_metric("failed")
            with self._locked():
                finished = self.controller.job_finished("failed", now, f"submit failed: {sub.error}")
            self._after_job(finished, now)
            return
        self._retrain_metric("submitted")
        new = f", {data.new_rows} of them new since the rejected attempt" if data.new_rows is not None else ""
        self._say("retrain_submitted", f"{decision.reason}: submitted {sub.submission_id} "
                  f"({data.rows} rows: {data.labelled_live_rows} labelled live + {data.reference_rows} "
                  f"reference{new})" + (" (it already existed)" if sub.already_existed else ""),
                  episode=episode, attempt=decision.attempt, submission_id=sub.submission_id,
                  data=data.uri, data_generation=decision.data_generation, rows=data.rows,
                  new_rows=data.new_rows, overrides=sub.overrides, submit_s=round(sub.seconds, 3))

    def _poll_job(self, now: float) -> None:
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
            self._retrain_metric("failed")
            self._say("retrain_failed", f"{sid}: {outcome.detail}" + (f": {poll.cause}" if poll.cause else ""),
                      episode=episode, submission_id=sid, attempt=attempt, cause=poll.cause)
        else:
            self._retrain_metric("succeeded")
            self._say("retrain_finished", f"{sid} registered {outcome.version}: {outcome.detail}",
                      episode=episode, submission_id=sid, version=outcome.version, metrics=outcome.metrics,
                      champion_metrics=outcome.champion_metrics)
        with self._locked():
            decision = self.controller.job_finished(outcome.outcome, now, outcome.detail)
        if outcome.outcome == "promoted":
            self._retrain_metric("promoted")
            self._say("promoted", f"{outcome.version} is the new {self.cfg.promotion.alias}: {outcome.detail}",
                      episode=episode, version=outcome.version)
        elif outcome.outcome == "rejected":
            self._retrain_metric("rejected")
            self._say("rejected", f"{outcome.version} not promoted, {self.cfg.promotion.alias} unchanged: "
                      f"{outcome.detail}", episode=episode, version=outcome.version)
        self._after_job(decision, now)
        if outcome.outcome == "promoted":
            self._roll_out(outcome.version, episode)

    def _after_job(self, decision: Decision, now: float) -> None:
        if decision.action in (Action.exhausted, Action.finished):
            with self._locked():
                self._forget_onset()  # the episode is over: the next one finds its own onset
        if decision.action is Action.exhausted:
            self._retrain_metric("exhausted")
            self._say("retries_exhausted", decision.reason, episode=decision.episode_id, attempt=decision.attempt)
        elif decision.action is Action.gave_up:
            self._give_up(decision, now)
        elif decision.detail.get("retry_in_s") is not None:
            self._say("retrain_retry_scheduled", decision.reason, episode=decision.episode_id,
                      attempt=decision.attempt, retry_in_s=decision.detail["retry_in_s"])

    def _say_waiting(self, episode: str, attempt: int, min_new: int) -> None:
        if min_new:
            note = f"attempt {attempt} of episode {episode} waits for {min_new} labelled live rows that the " \
                   "rejected attempt's data set did not have"
        else:
            note = f"episode {episode} waits for labels: fewer than {self.cfg.drift.retrain.min_labelled_rows} " \
                   "labelled live rows since the drift began"
        if self._waiting_note != note:
            self._say("retrain_waiting", note, episode=episode, attempt=attempt,
                      onset=_iso(self.onset_at) if self.onset_at else None)
            self._waiting_note = note

    def _roll_out(self, version: str, episode: str) -> None:
        """Point Serve at the promoted version (``rollout``), then re-base on it."""
        done = rollout.roll_out(self.cfg, version)
        if done.error is not None:
            self._say("rollout_failed", f"could not point Serve app {self.cfg.serve.app_name!r} at {version}: "
                      f"{done.error}; still monitoring against {self.ref.suite.version}", episode=episode,
                      version=version)
        if not done.done:
            return
        self._say("rolled_out", f"Serve app {self.cfg.serve.app_name!r} serves {version} (in place)",
                  episode=episode, version=version, seconds=done.seconds)
        if done.load_error is not None:
            raise done.load_error
        previous = self.controller.state.reference_version
        with self._locked():
            self._rebase_onto(done.reference)
        self._say("rebased", f"detectors re-based from {previous} to {version}'s reference sample",
                  episode=episode, version=version, previous=previous)

    # ---- giving up: the new normal -------------------------------------------------------------------------
    def _give_up(self, decision: Decision, now: float) -> None:
        self._retrain_metric("gave_up")
        self._say("gave_up", f"{decision.reason}; no more retrains for this drift: accepting the new "
                  "normal (the detectors re-base on recent labelled live rows, production unchanged)",
                  episode=decision.episode_id, attempts=decision.attempt, **decision.detail)
        self._accept_new_normal(now)

    def _accept_new_normal(self, now: float) -> None:
        """Re-base the detectors on recent labelled live rows with the production model (``new_normal``);
        on failure (too few rows yet) the controller stays in ``gave_up``, retraining nothing, and this is
        tried again once more labels arrived."""
        labels = self.counters["labels"]
        if self._new_normal_tried == labels:
            return
        version = self.controller.state.reference_version
        episode = self.controller.current_episode_id
        try:
            rows = new_normal.recent_rows(self.cfg, since=self.onset_at)
            if len(rows) < new_normal.min_rows(self.cfg):
                raise ValueError(f"{len(rows)} labelled live rows since the drift began; it needs "
                                 f"{new_normal.min_rows(self.cfg)}")
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
            self._use(ref)
            self.new_normal = baseline
            self._new_normal_tried = None
            self.windows.restored_ids = set()
            self._forget_onset()
            self.controller.accept_new_normal(now)
        self._say("rebased", f"accepted the new normal: detectors of {version} re-based on {len(rows)} "
                  f"recent labelled live rows (the drift of {episode} could not be healed); no new episode "
                  f"before {_iso(self.controller.state.wait_until)}", version=version, previous=version,
                  reason="new_normal", episode=episode, rows=len(rows), reference=uri)

    # ---- persistence and metrics ---------------------------------------------------------------------------
    def _save_state(self) -> None:
        with self._lock:  # a consistent snapshot; written after the lock
            data = encode({"model": self.model, "controller": self.controller.state.to_dict(),
                           "counters": self.counters, "onset_at": self.onset_at, "onset_detail": self.onset_detail,
                           "first_flag_at": self._first_flag_at, "data_labels_at": self._data_labels_at,
                           "new_normal": self.new_normal, "last_results": self.last_results,
                           "last_error": self.last_error, "saved_at": _iso(self.clock())})
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


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


__all__ = ["MAX_STATUS_ERRORS", "STATE_FILE", "DriftMonitor", "state_uri"]
