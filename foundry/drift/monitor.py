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
round until an episode is in flight. The monitor's own steps are mixins, one job each: ``intake`` (the
``ingest*`` actor methods and draining the queues into the windows), ``rounds`` (a test round and its
decision), ``rebase`` (the reference and every change of it) and ``bookkeeping`` (``state.json``,
metrics, loop errors); this module holds the actor's construction, its read-only surface and the loop.

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
(compaction, retention) runs in a thread of its own (``foundry.ops.maintenance``).

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

from foundry.config import AlarmMethod
from foundry.drift import reference
from foundry.drift.bookkeeping import Bookkeeping
from foundry.drift.controller import Action, ControllerState, Phase, RetrainController
from foundry.drift.episodes import Episodes, MonitorState
from foundry.drift.events import EventLog, iso
from foundry.drift.identity import episode_floor, from_jobs
from foundry.drift.intake import Intake
from foundry.drift.live_store import LiveStore, LiveWriter
from foundry.drift.monitor_config import MonitorConfig
from foundry.drift.queues import RowQueue
from foundry.drift.rebase import Rebasing
from foundry.drift.rounds import DriftRounds
from foundry.drift.runner import MAX_STATUS_ERRORS, RetrainRunner
from foundry.drift.state import STATE_FILE, StateFile, StateLock, state_uri
from foundry.drift.windows import LiveWindows, VersionTracker
from foundry.ops.maintenance import Maintenance
from foundry.rollout.manager import Rollouts

log = logging.getLogger(__name__)


class DriftMonitor(Intake, DriftRounds, Rebasing, Bookkeeping):
    """Plain class; ``jobs.monitor`` turns it into the detached actor (``ray.remote(DriftMonitor)``)."""

    def __init__(self, config_data: dict[str, Any], clock=time.time, start: bool = True):
        self.cfg = MonitorConfig.from_container(config_data)  # the sections it reads (monitor_config.py)
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

    # ---- the public surface (actor methods; ``ingest``, ``ingest_labels``, ``ingest_answers``: ``Intake``) --
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


__all__ = ["MAX_STATUS_ERRORS", "STATE_FILE", "DriftMonitor", "state_uri"]
