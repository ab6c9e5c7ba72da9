"""``DriftMonitor``: the Ray actor that watches one served model and heals it.

One per model, named ``<drift.monitor.name_prefix>-<model>`` in namespace ``drift.monitor.namespace``,
detached and restartable (``jobs.monitor`` creates it). It is a threaded actor: ``ingest`` calls
from every Serve replica run concurrently (each checks its batch (``LiveBatch``) and queues what the
row-bounded queue has room for, a uniform sample when not all of it fits; ``ingest`` never waits),
while one background thread does the work in rounds of ``poll_interval_s``:

1. absorb queued live rows into the windows (and feed the online detectors) and match labels to
   the predictions they judge (the error stream);
2. every ``window.test_every_rows`` new rows, test the last ``window.size`` rows with every windowed
   detector and the latest labelled window with the concept detector; the round "votes" drift when
   ``window.votes_required`` voting detectors flag it, and ``RetrainController`` decides;
3. carry out what it decided (``episodes``): submit and poll the retrain job, record its outcome, roll a
   promoted version out and re-base on it, or, when the controller gives up, accept the new normal.

This class is the thin loop around the parts that do the work, each in its own module and each
readable alone (the way Ray Serve's controller is a loop over state managers): ``batch`` (what Serve
hands over), ``windows`` (live windows, label matching, which version served each row), ``reference``
(a version's detectors, loaded in one piece), ``controller`` (when to retrain), ``episodes`` (a retrain
episode's life, over ``runner``, ``rollout`` and ``new_normal``), ``onset`` (where the drift began) and
``state`` (``state.json``). The onset (which rows a retrain learns from) is re-estimated each drifted
round until an episode is in flight.

The windows hold only rows the reference version served. When Serve answers with another version for
``window.test_every_rows`` rows in a row (a roll-out or rollback made outside this monitor, or a
promotion with ``drift.retrain.rollout=false`` rolled out later) and no retrain is in flight, the
monitor re-bases on it (``drift.monitor.follow_served_version``): testing one version's traffic
against another version's reference would report the swap itself as drift.

Locking. One round runs at a time (``_round_lock``: the loop thread, or a ``flush()`` call), and only
the thread running it changes the monitor's state, always under ``_lock`` (``_locked()``, also handed
to ``Episodes``); ``status()`` and ``rounds()`` only read, under ``_lock``. ``_lock`` is never held
across I/O: it is released for the slow calls (job submission and polling, reading stored labels,
loading a version's detectors, a roll-out that waits for Serve), and events and ``state.json`` are
written after it is released, so ``status()`` answers within milliseconds whatever the Jobs API or
Serve does. Between two sections a reader sees a state the round is about to act on, never a torn
one (e.g. an attempt "running" while its data set is written, cancelled again if too few labels turn
up). Since nothing else writes, a round may read its own state without the lock.
``ingest``/``ingest_labels`` touch only the bounded queues and the live store's write buffer
(``LiveWriter``, written once every ``storage.tables.live_flush_s`` by the round); storage maintenance
(compaction, retention) runs in a thread of its own (``foundry.maintenance``).

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
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from foundry import config as foundry_config
from foundry.config import AlarmMethod, FoundryConfig, Task
from foundry.drift import onset, reference
from foundry.drift.batch import LiveBatch
from foundry.drift.controller import Action, ControllerState, Decision, Phase, RetrainController
from foundry.drift.episodes import Episodes, MonitorState
from foundry.drift.events import EventLog, iso
from foundry.drift.identity import episode_floor, from_jobs
from foundry.drift.live_store import LiveStore, LiveWriter
from foundry.drift.queues import RowQueue
from foundry.drift.reference import Reference
from foundry.drift.runner import MAX_STATUS_ERRORS, RetrainRunner
from foundry.drift.state import STATE_FILE, StateFile, StateLock, encode, state_uri
from foundry.drift.windows import LiveWindows, VersionTracker
from foundry.maintenance import Maintenance
from foundry.rollout.manager import Rollouts

log = logging.getLogger(__name__)


class DriftMonitor:
    """Plain class; ``jobs.monitor`` turns it into the detached actor (``ray.remote(DriftMonitor)``)."""

    def __init__(self, config_data: dict[str, Any], clock=time.time, start: bool = True):
        self.cfg: FoundryConfig = foundry_config.from_container(config_data)
        self.model = self.cfg.model_name
        self.clock = clock
        self.events = EventLog(self.cfg.storage.root, self.model)
        self.live = LiveStore(self.cfg.storage.root, self.model)
        self.live_writer = LiveWriter(self.live, self.cfg.storage.tables.live_flush_s,
                                      self.cfg.drift.monitor.max_queued_rows * 10, time.monotonic)
        self.maintenance = Maintenance(self.cfg, say=self.events.write)  # its own thread: not the round's say
        self.state_file = StateFile(self.cfg.storage.root, self.model)
        self.runner = RetrainRunner(self.cfg)
        self.versions = VersionTracker()
        self._features = [(f.name, f.type.value == "numeric") for f in self.cfg.data.features]
        # Bounded by rows, not batches (``drift.monitor.max_queued_rows`` each): see ``ingest``.
        self._queue = RowQueue(self.cfg.drift.monitor.max_queued_rows)
        self._labels = RowQueue(self.cfg.drift.monitor.max_queued_rows)
        self._answers = RowQueue(2 * self.cfg.drift.monitor.max_queued_rows)  # a roll-out's answers, both versions
        self._rng = np.random.default_rng()
        state_lock = StateLock(self.events.write)  # held briefly, never across I/O (module docstring)
        self._lock, self._locked, self._say = state_lock.lock, state_lock.locked, state_lock.say
        self._round_lock = threading.Lock()  # one round at a time
        self._stop = threading.Event()
        self._metrics = None
        self._announced: str | None = None  # the episode whose drift_detected event is written
        # Recent rounds in memory, for plots and dashboards that poll ``rounds()`` (lost on restart).
        self.history: deque[dict] = deque(maxlen=self.cfg.drift.monitor.history_rounds)
        self.counters = {"rows": 0, "labels": 0, "labels_matched": 0, "rounds": 0, "other_version_rows": 0,
                         "loop_errors": 0, "rows_dropped": 0, "labels_dropped": 0, "answers_dropped": 0}

        saved = self.state_file.read()
        self.sequential = self.cfg.drift.alarm.method is AlarmMethod.sequential
        # A sequential alarm is already the evidence of many rows: one is enough (drift.window.consecutive
        # is for the windowed tests, whose rounds are independent looks).
        consecutive = 1 if self.sequential else self.cfg.drift.window.consecutive
        self.controller = RetrainController(self.cfg.drift.retrain, self.model, consecutive,
                                            ControllerState.from_dict(saved.get("controller", {})))
        # Episode numbers never go back, even when the state file was lost: the events and the registry's
        # lineage remember them (foundry/drift/identity.py); the Jobs API is asked in the first round.
        self.controller.state.episode = max(self.controller.state.episode, episode_floor(
            self.cfg.storage.root, self.model, self.cfg.storage.layout.open_registry(), None))
        self._jobs_floor_checked = False
        self.counters.update(saved.get("counters", {}))
        self.onset_at: float | None = saved.get("onset_at")
        self.onset_detail: dict[str, Any] | None = saved.get("onset_detail")
        # The oldest row of the first window flagged while no episode was in flight (the onset search's anchor).
        self._first_flag_at: float | None = saved.get("first_flag_at")
        self._harm_latched: bool = saved.get("harm_latched", False)  # see _test_round
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
        self.windows = LiveWindows(self.cfg.drift, ref.suite, ref.alarm)
        self._use(ref)
        self.rollouts = Rollouts(self.cfg, locked=self._locked, say=self._say,
                                 champion=lambda: self.controller.state.reference_version, reference=lambda: self.ref,
                                 rebase_to=self._rebase_to_version, fresh_evidence=self._fresh_evidence,
                                 saved=saved.get("rollout"), metrics=self._monitor_metrics,
                                 hold=lambda: self.controller.state.phase is Phase.running)
        mine = MonitorState(labels_seen=lambda: self.counters["labels"], onset=lambda: self.onset_at,
                            reference=lambda: self.ref, forget_onset=self._forget_onset,
                            rebase_onto=self._rebase_onto, adopt_new_normal=self._adopt_new_normal,
                            begin_rollout=lambda version: self.rollouts.begin(version, self.clock()),
                            start_guard=lambda new, old: self.rollouts.start_guard(new, old, self.clock()))
        self.episodes = Episodes(self.cfg, self.controller, self.runner, locked=self._locked, say=self._say,
                                 metric=self._retrain_metric, save_state=self._save_state, monitor=mine,
                                 data_labels_at=saved.get("data_labels_at", 0))
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

    @property
    def _client(self):
        """The Jobs API client (the runner's; tests put a fake one here)."""
        return self.runner.client

    @_client.setter
    def _client(self, client) -> None:
        self.runner.client = client

    # ---- the public surface (actor methods) ------------------------------------------------------------
    def ingest(self, batch: LiveBatch | dict[str, Any]) -> dict[str, Any]:
        """Check one batch of live rows (``LiveBatch.from_dict``: Serve's sink sends the dict), queue what
        fits for the detectors and the live store's writer, and say what was taken. Never takes the state
        lock and never waits: beyond ``max_queued_rows`` a uniform sample of the batch is taken, the rest
        counted (``rows_dropped``), and ``full`` tells the sink to back off (``MonitorSink``)."""
        rows = LiveBatch.from_dict(batch)
        n = len(rows)
        take = self._queue.reserve(n)
        if take < n:
            self._dropped("rows_dropped", n - take)
            rows = rows.select(np.sort(self._rng.choice(n, size=take, replace=False))) if take else None
        if rows is not None and take:
            try:
                frame = rows.frame(self._features, self.cfg.data.task is Task.regression)
            except BaseException:
                self._queue.done(take)
                raise
            self.live_writer.add(frame)
            self._queue.put((rows, frame))
        return {"taken": take, "dropped": n - take, "full": take < n, "queued_rows": self._queue.rows,
                "capacity": self._queue.capacity}

    def ingest_labels(self, request_ids: list[str], labels: list[Any]) -> int:
        """Labels are already on storage (``POST /feedback`` wrote them); here they feed the error stream.
        Beyond the bound the newest are counted and dropped (a retrain still reads them from storage)."""
        take = self._labels.reserve(len(request_ids))
        if take < len(request_ids):
            self._dropped("labels_dropped", len(request_ids) - take)
        if take:
            self._labels.put((list(request_ids)[:take], list(labels)[:take]))
        return take

    def ingest_answers(self, chunk: dict[str, Any]) -> int:
        """A roll-out's answers (``foundry.serving.inference.answer_columns``), for its live paired tests."""
        n = len(chunk["request_id"])
        take = self._answers.reserve(n)
        if take < n:
            self._dropped("answers_dropped", n - take)
            if not take:
                return 0
            chunk = {k: (v[:take] if isinstance(v, np.ndarray) else v) for k, v in chunk.items()}
        self._answers.put(chunk)
        return take

    def _dropped(self, counter: str, n: int) -> None:
        with self._lock:
            self.counters[counter] += n
        self._count_rows(counter.removesuffix("_dropped") + "_dropped", n)

    def rollout_status(self) -> dict[str, Any]:
        """The roll-out in progress (champion, challenger, mode, fraction, live evidence) and recent ones."""
        with self._lock:
            return self.rollouts.status()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"model": self.model, "reference_version": self.controller.state.reference_version,
                    "controller": self.controller.state.to_dict(), "counters": dict(self.counters),
                    "window_rows": len(self.windows.window), "labelled_window_rows": len(self.windows.errors),
                    "onset_at": iso(self.onset_at) if self.onset_at else None, "onset_detail": self.onset_detail,
                    "new_normal": self.new_normal, "queued_rows": self._queue.rows,
                    "unwritten_rows": self.live_writer.buffered, "maintenance": self.maintenance.last,
                    "last_results": self.last_results, "last_error": self.last_error,
                    "rollout": self.rollouts.status()}

    def rounds(self, after: int = 0) -> list[dict[str, Any]]:
        """The remembered test rounds numbered above ``after`` (oldest first): poll with the last one seen."""
        with self._lock:
            return [r for r in self.history if r["round"] > after]

    def flush(self) -> dict[str, Any]:
        """Run a round now and write the buffered live rows (tests, benchmarks); returns the status."""
        self.step()
        self.live_writer.flush(force=True)
        return self.status()

    def stop(self) -> None:
        self._stop.set()
        self.live_writer.flush(force=True)

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
        if not self._jobs_floor_checked:
            self._floor_from_jobs()
        drained = self._drain()
        self._write_live()
        self.maintenance.maybe_run(now)
        self._follow_served_version()
        with self._locked():
            decision = None
            if drained and self.windows.due(self.cfg.drift.window.test_every_rows, self.cfg.drift.window.size):
                decision = self._test_round(now)
            if decision is not None and decision.action is Action.submit and not self.episodes.admit(decision, now):
                decision = None
        # What the episode does next reads the live store (a retrain set, a new normal): every row taken
        # so far is written first.
        if decision is not None and decision.action is Action.submit:
            self._write_live(force=True)
            self.episodes.submit(decision, now)
        elif decision is not None and decision.action is Action.gave_up:
            self._write_live(force=True)
            self.episodes.give_up(decision, now)
        if self.controller.state.phase is Phase.gave_up:  # its re-base failed, or a restart came between
            self._write_live(force=True)
            self.episodes.accept_new_normal(now)
        with self._locked():
            decision = self.controller.tick(now)
            submit = decision.action is Action.submit and self.episodes.admit(decision, now)
        if submit:
            self._write_live(force=True)
            self.episodes.submit(decision, now)
        if self.controller.state.phase is Phase.running:
            self.episodes.poll(now)
        self.rollouts.round(now)
        self._save_state()

    def _floor_from_jobs(self) -> None:
        """Once, outside the lock: no new episode may reuse a number the cluster's job history names (a
        wiped monitoring folder would otherwise replay an old episode's job and outcome)."""
        try:
            client = self.runner.job_client()
        except Exception as exc:  # the Jobs API is down: the events and the registry still hold the floor
            log.warning("episode floor: no Jobs API (%s); asking again next round", exc)
            return
        self._jobs_floor_checked = True
        floor = from_jobs(client, self.model)
        with self._locked():
            s = self.controller.state
            if s.phase in (Phase.idle, Phase.cooldown) and floor > s.episode:  # never renumber one in flight
                log.info("episode floor raised from %d to %d by the Jobs API's history", s.episode, floor)
                s.episode = floor

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

    # ---- live rows and labels (under the lock) -----------------------------------------------------------
    def _drain(self) -> int:
        """Absorb what is queued, one item per hold of the lock (``status()`` never waits behind a flood)."""
        n = 0
        while (chunk := self._answers.get()) is not None:  # answers first: a label that finds both answers is scored
            with self._locked():
                self.rollouts.add_answers(chunk)
            self._answers.done(len(chunk["request_id"]))
        while (item := self._queue.get()) is not None:
            batch, frame = item
            with self._locked():
                reference_version = self.controller.state.reference_version
                mine = self.versions.track(reference_version, batch.model_version, batch.received_at)
                self.rollouts.observe_served(batch.model_version, batch.received_at)
                self.counters["labels_matched"] += self.windows.absorb_batch(batch, frame, mine)
                self.counters["rows"] += len(frame)
                others = int((~mine).sum())
                if others:
                    self.counters["other_version_rows"] += others
            self._queue.done(len(frame))
            if others:
                self._count_rows("other_version", others)
            self._count_rows("live", len(frame))
            n += len(frame)
        while (item := self._labels.get()) is not None:
            ids, labels = item
            with self._locked():
                self.counters["labels"] += len(ids)
                self.counters["labels_matched"] += self.windows.match_labels(ids, labels)
                self.rollouts.add_labels(ids, labels)
            self._labels.done(len(ids))
            self._count_rows("label", len(ids))
            n += len(ids)
        return n

    def _write_live(self, force: bool = False) -> None:
        """The live rows taken since the last write, as one file every ``storage.tables.live_flush_s``."""
        try:
            self.live_writer.flush(force)
        except Exception as exc:  # kept (bounded) and retried next round; the windows have the rows already
            log.warning("cannot write %d live rows (retried next round): %s", self.live_writer.buffered, exc)

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

    # ---- the reference -----------------------------------------------------------------------------------
    def _baseline_for(self, version: str) -> dict[str, Any] | None:
        return self.new_normal if self.new_normal and self.new_normal.get("version") == version else None

    def _use(self, ref: Reference) -> None:
        """Test against ``ref`` from now on, with fresh windows (under the lock)."""
        self.ref = ref
        self.windows.reset(ref.suite, ref.alarm)
        if not self.controller.state.reference_version:
            self.controller.rebase(ref.version)

    def _rebase_onto(self, ref: Reference) -> None:
        """Watch ``ref``'s version from now on (under the lock)."""
        self._use(ref)
        self.controller.rebase(ref.version)
        self.new_normal = None
        self._forget_onset()
        self.versions.rebased(time.time())  # rows answered before now belong to the previous version's world

    def _rebase_to_version(self, version: str) -> None:
        """A roll-out or its guard changed the version Serve answers with: watch it (I/O: without the lock)."""
        previous = self.controller.state.reference_version
        if version == previous:
            return
        ref = reference.load(self.cfg, version)
        with self._locked():
            self._rebase_onto(ref)
        restored = self._restore_windows()
        self._say("rebased", f"detectors re-based from {previous} to {version}'s reference sample ({restored} of "
                  "its live rows reloaded)", version=version, previous=previous, reason="rollout")

    def _fresh_evidence(self) -> None:
        """After a rollback the alarm starts afresh (under the lock): the drift that asked for the rolled-back
        version opens no new episode until new rows show it again."""
        self.windows.reset(self.ref.suite, self.ref.alarm)
        self._forget_onset()

    def _adopt_new_normal(self, ref: Reference, baseline: dict[str, Any]) -> None:
        """Test against the new-normal reference ``ref`` (``baseline``: where it is stored) (under the lock)."""
        self._use(ref)
        self.new_normal = baseline
        self.windows.restored_ids = set()
        self._forget_onset()

    def _restore_windows(self) -> int:
        """Rebuild windows and the error stream from storage (after a restart or a re-base)."""
        self._write_live(force=True)  # what was taken so far is read back with the rest
        version = self.controller.state.reference_version
        recent, rows, labels = reference.stored_rows(self.cfg, self.live, version, self._baseline_for(version),
                                                     self.ref.predictor)
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
        if (version is None or not self.cfg.drift.monitor.follow_served_version or self.rollouts.busy
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

    # ---- persistence and metrics ---------------------------------------------------------------------------
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


__all__ = ["MAX_STATUS_ERRORS", "STATE_FILE", "DriftMonitor", "state_uri"]
