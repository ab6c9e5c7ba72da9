"""``DriftMonitor``: the Ray actor that watches one served model and heals it.

One per model, named ``<drift.monitor.name_prefix>-<model>`` in namespace ``drift.monitor.namespace``,
detached and restartable (``jobs.monitor`` creates it). It is a threaded actor: ``ingest`` calls
from every Serve replica run concurrently (each persists its batch, then queues it), while one
background thread does the work in rounds of ``poll_interval_s``:

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

The drift onset (which rows a retrain learns from) is a change-point estimate (``onset``) over one
window before the first flagged window and every row since, re-estimated each drifted round until
an episode is in flight; when no clear change shows, the oldest row of the first flagged window.

The windows hold only rows the reference version served. When Serve answers with another version for
``window.test_every_rows`` rows in a row (a roll-out or rollback made outside this monitor, or a
promotion with ``drift.retrain.rollout=false`` that an operator rolled out later) and no retrain is in
flight, the monitor re-bases on that version (``drift.monitor.follow_served_version``): testing one
version's traffic against another version's reference would report the swap itself as drift.

What survives a restart (``state.json``, rewritten atomically after every change): the controller
(phase, episode, attempt, data generation, outcomes, episode starts, submission id, clocks), the
reference version, the new-normal reference in use (if any), the onset, counters and the last results
(a monitor that gave up never resumes retraining for that drift). The windows are rebuilt from the
persisted live rows and labels, so a restarted monitor tests the same data its predecessor would have.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from foundry import config as foundry_config
from foundry import storage
from foundry.config import FoundryConfig, StorageConfig, Task
from foundry.drift import new_normal, onset, retrain
from foundry.drift.controller import Action, ControllerState, Phase, RetrainController
from foundry.drift.detectors import DetectorResult, DetectorSuite, load_or_build
from foundry.drift.events import EventLog
from foundry.drift.live_store import LiveStore

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
MAX_STATUS_ERRORS = 5
_EPISODE_NUMBER = re.compile(r"-e(\d+)$")


def state_uri(storage_root: str, model: str) -> str:
    return storage.join(storage.normalize(StorageConfig(root=storage_root).monitoring), model, STATE_FILE)


@dataclass
class _Window:
    """The newest live rows, as the detectors need them (bounded by ``retain_rows``)."""

    x_num: np.ndarray
    x_cat: np.ndarray
    scores: np.ndarray
    received_at: np.ndarray  # epoch seconds

    @classmethod
    def empty(cls) -> _Window:
        return cls(np.zeros((0, 0), np.float32), np.zeros((0, 0), np.int64), np.zeros((0, 0), np.float32),
                   np.zeros(0, np.float64))

    def append(self, x_num: np.ndarray, x_cat: np.ndarray, scores: np.ndarray, received_at: np.ndarray,
               keep: int) -> None:
        scores = scores.reshape(len(scores), -1).astype(np.float32)
        if len(self.x_num) == 0:
            self.x_num, self.x_cat, self.scores, self.received_at = x_num, x_cat, scores, received_at
        else:
            self.x_num = np.concatenate([self.x_num, x_num])[-keep:]
            self.x_cat = np.concatenate([self.x_cat, x_cat])[-keep:]
            self.scores = np.concatenate([self.scores, scores])[-keep:]
            self.received_at = np.concatenate([self.received_at, received_at])[-keep:]

    def __len__(self) -> int:
        return len(self.x_num)


class DriftMonitor:
    """Plain class; ``jobs.monitor`` turns it into the detached actor (``ray.remote(DriftMonitor)``)."""

    def __init__(self, config_data: dict[str, Any], clock=time.time, start: bool = True):
        self.cfg: FoundryConfig = foundry_config.from_container(config_data)
        self.model = self.cfg.model_name
        self.clock = clock
        self.events = EventLog(self.cfg.storage.root, self.model)
        self.live = LiveStore(self.cfg.storage.root, self.model)
        self.fs, self.state_path = storage.resolve(state_uri(self.cfg.storage.root, self.model))
        self._queue: queue.Queue = queue.Queue()
        self._labels: queue.Queue = queue.Queue()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._metrics = None
        self._client = None
        self._status_errors = 0
        self._stopping: str | None = None  # the timed-out job a stop was sent to
        self._waiting_note: str | None = None
        self._announced: str | None = None  # the episode whose drift_detected event is written
        self._labels_when_short: int | None = None  # labels seen when a retrain set last came up short
        self._new_normal_tried: int | None = None  # labels seen when a new-normal re-base last failed
        self._new_normal_note: str | None = None
        self.last_results: list[dict] = []
        # Recent rounds in memory, for plots and dashboards that poll ``rounds()`` (lost on restart).
        self.history: deque[dict] = deque(maxlen=self.cfg.drift.monitor.history_rounds)
        self.counters = {"rows": 0, "labels": 0, "labels_matched": 0, "rounds": 0, "other_version_rows": 0}
        # The trailing run of live rows served by one version other than the reference: (version, rows).
        self._other_run: tuple[str | None, int] = (None, 0)
        # Wall time of the last re-base: rows answered before it belong to the old world (a roll-out's
        # stragglers of the previous version must not look like a rollback).
        self._rebased_at = 0.0
        self._restored_ids: set[str] = set()  # request ids the windows were last reloaded with
        self._unloadable: set[str] = set()  # versions a re-base onto failed (said once each)
        self.rows_since_test = 0
        self.labels_since_test = 0
        self._online_results: list[DetectorResult] = []  # online detectors' verdicts since the last round

        saved = self._read_state()
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
        self.last_results = saved.get("last_results", [])
        version = self.controller.state.reference_version or self._served_version()
        try:
            self._load_reference(version, self._baseline_for(version))
        except Exception as exc:
            if self._baseline_for(version) is None:
                raise
            log.error("cannot load the new-normal reference %s (%s); using %s's own", self.new_normal, exc, version)
            self.new_normal = None
            self._load_reference(version)
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
        from foundry.drift.events import read_events

        episodes = (e.get("episode") or "" for e in read_events(self.cfg.storage.root, self.model))
        numbers = [int(m.group(1)) for ep in episodes if (m := _EPISODE_NUMBER.search(ep))]
        return max(numbers, default=0)

    # ---- reference ---------------------------------------------------------------------------------
    def _registry(self):
        from foundry.registry import Registry

        return Registry(storage.normalize(self.cfg.storage.registry))

    def _served_version(self) -> str:
        """What Serve serves now (its pinned user_config), else the promotion alias's version."""
        try:
            from foundry.serving.control import current_user_config

            version = current_user_config(self.cfg.serve.app_name).get("version")
            if version:
                return version
        except Exception as exc:  # Serve not running, or the app not deployed yet
            log.info("no deployed Serve application %s (%s); using the %s alias", self.cfg.serve.app_name, exc,
                     self.cfg.promotion.alias)
        return self._registry().get(self.model, self.cfg.promotion.alias).version

    def _baseline_for(self, version: str) -> dict[str, Any] | None:
        return self.new_normal if self.new_normal and self.new_normal.get("version") == version else None

    def _load_reference(self, version: str, baseline: dict[str, Any] | None = None) -> None:
        """Watch ``version`` against its registry reference, or (``baseline``) against a new normal."""
        from foundry.predictor import Predictor

        path = self._registry().fetch(self.model, version)  # every file checked against the manifest
        if baseline is not None:
            suite = new_normal.build(self.cfg, path, version, baseline["uri"], say=log.info)
        else:
            suite = load_or_build(self.cfg.drift.detectors, path, version, say=log.info)
        predictor = Predictor.from_dir(path)
        reference = retrain.reference_frame(path)
        # Assigned only once all three loaded: a failed re-base leaves the old reference whole.
        self.suite: DetectorSuite = suite
        self.predictor, self.reference = predictor, reference
        self.window = _Window.empty()
        self.pending: OrderedDict[str, Any] = OrderedDict()  # request_id -> (prediction, received_at), awaiting a label
        self.early: OrderedDict[str, Any] = OrderedDict()  # request_id -> label that came before its row
        self.errors: deque = deque(maxlen=max(self.cfg.drift.detectors.concept.window_rows, 1))
        # (received_at, error) of every matched label, for the onset estimate (longer than ``errors``).
        self.labelled_errors: deque[tuple[float, float]] = deque(maxlen=self.cfg.drift.monitor.retain_rows)
        self.rows_since_test = 0
        self.labels_since_test = 0
        if not self.controller.state.reference_version:
            self.controller.rebase(version)

    def _rebase_onto(self, version: str) -> None:
        """Watch ``version`` from now on; raises, changing nothing, if its reference cannot be loaded."""
        self._load_reference(version)
        self.controller.rebase(version)
        self.new_normal = None
        self._forget_onset()
        self._other_run = (None, 0)
        self._rebased_at = time.time()  # rows answered before now belong to the previous version's world

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
        # A batch written before this read may still be queued (or be re-sent by Ray after a restart).
        self._restored_ids = set(recent["request_id"]) if not recent.empty else set()
        if recent.empty:
            return 0
        self._absorb_frame(recent, feed_online=False)
        from foundry.serving.feedback import read_feedback

        labels = read_feedback(self.cfg.storage.root, self.model)
        if not labels.empty:
            self._match_labels(labels["request_id"].tolist(), labels["label"].tolist())
        self.rows_since_test = 0
        self.labels_since_test = 0
        return len(recent)

    # ---- ingestion (called from Serve replicas through MonitorSink) --------------------------------------
    def ingest(self, batch: dict[str, Any]) -> int:
        """Persist one batch of live rows, then queue it for the detectors; returns the rows taken."""
        frame = self._frame(batch)
        self.live.write(frame)
        self._queue.put((batch, frame))
        return len(frame)

    def ingest_labels(self, request_ids: list[str], labels: list[Any]) -> int:
        """Labels are already on storage (``POST /feedback`` wrote them); here they feed the error stream."""
        self._labels.put((list(request_ids), list(labels)))
        return len(request_ids)

    def _frame(self, batch: dict[str, Any]) -> pd.DataFrame:
        n = len(batch["request_id"])
        out = {"request_id": np.asarray(batch["request_id"], dtype=object).astype(str),
               "received_at": pd.to_datetime(np.asarray(batch["received_at"], dtype=np.float64), unit="s", utc=True),
               "model_version": np.asarray(batch["model_version"], dtype=object).astype(str)}
        pred = np.asarray(batch["prediction"])
        out["prediction"] = pred.astype(np.float64) if self.cfg.data.task is Task.regression else pred.astype(str)
        raw = batch.get("raw", {})
        for f in self.cfg.data.features:
            values = pd.Series(raw.get(f.name, [None] * n), dtype=object)
            if f.type.value == "numeric":
                out[f.name] = pd.to_numeric(values, errors="coerce").astype("float64")
            else:
                out[f.name] = values.where(values.notna(), None).map(lambda v: None if v is None else str(v))
        return pd.DataFrame(out)

    def _absorb_frame(self, frame: pd.DataFrame, feed_online: bool) -> None:
        """Encode stored raw rows with the reference version (restore path: no matrices stored)."""
        encoded = self.predictor.preprocessor.transform(frame)
        preds = self.predictor.predict(frame)
        scores = preds.proba if preds.proba is not None else preds.values.astype(np.float64)
        self._absorb(frame["request_id"].tolist(), frame["prediction"].to_numpy(), encoded["x_num"],
                     encoded["x_cat"], np.asarray(scores), _epoch(frame["received_at"]), feed_online)

    def _absorb(self, request_ids, predictions, x_num, x_cat, scores, received_at, feed_online: bool) -> None:
        keep = self.cfg.drift.monitor.retain_rows
        self.window.append(np.asarray(x_num, np.float32), np.asarray(x_cat, np.int64), np.asarray(scores),
                           np.asarray(received_at, np.float64), keep)
        early_ids, early_labels = [], []
        for rid, pred, at in zip(request_ids, predictions, np.asarray(received_at, np.float64), strict=True):
            self.pending[rid] = (pred, float(at))
            if rid in self.early:
                early_ids.append(rid)
                early_labels.append(self.early.pop(rid))
        while len(self.pending) > keep:
            self.pending.popitem(last=False)
        if early_ids:
            self.counters["labels_matched"] += self._match_labels(early_ids, early_labels)
        self.rows_since_test += len(request_ids)
        if feed_online:
            result = self.suite.update_online(np.asarray(x_num, np.float32), np.asarray(x_cat, np.int64))
            if result is not None:
                self._online_results.append(result)

    def _match_labels(self, request_ids: list[str], labels: list[Any]) -> int:
        matched_preds, matched_labels, matched_at = [], [], []
        for rid, label in zip(request_ids, labels, strict=True):
            entry = self.pending.pop(rid, None)
            if entry is not None:
                matched_preds.append(entry[0])
                matched_at.append(entry[1])
                matched_labels.append(label)
            else:  # the label overtook its row (separate queues): match it when the row arrives
                self.early[rid] = label
        while len(self.early) > self.cfg.drift.monitor.retain_rows:
            self.early.popitem(last=False)
        if matched_preds:
            errs = self.suite.errors(np.asarray(matched_preds), np.asarray(matched_labels))
            self.errors.extend(errs.tolist())
            self.labelled_errors.extend(zip(matched_at, errs.astype(np.float64).tolist(), strict=True))
            self.labels_since_test += len(errs)
            if self.suite.cfg.concept.method.value == "fet_online":
                result = self.suite.test_concept(errs)
                if result is not None:
                    self._online_results.append(result)
        return len(matched_preds)

    # ---- the background loop -------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.cfg.drift.monitor.poll_interval_s):
            try:
                self.step()
            except Exception:
                log.exception("monitor round failed (it will be retried next round)")

    def step(self) -> None:
        """One round (the loop calls it; tests may call it directly with ``start=False``)."""
        with self._lock:
            now = self.clock()
            drained = self._drain()
            self._follow_served_version()
            if drained and self.rows_since_test >= self.cfg.drift.window.test_every_rows \
                    and len(self.window) >= self.cfg.drift.window.size:
                self._test_round(now)
            if self.controller.state.phase is Phase.gave_up:  # its re-base failed, or a restart came between
                self._accept_new_normal(now)
            decision = self.controller.tick(now)
            if decision.action is Action.submit:
                self._submit(decision, now)
            if self.controller.state.phase is Phase.running:
                self._poll_job(now)
            self._save_state()

    def _drain(self) -> int:
        n = 0
        while True:
            try:
                batch, frame = self._queue.get_nowait()
            except queue.Empty:
                break
            mine = self._track_versions(frame["model_version"].to_numpy(), np.asarray(batch["received_at"]))
            take = mine
            if self._restored_ids:  # a batch on storage when the windows were reloaded is in them already
                # Set lookups per row (O(batch)): Series.isin would hash the whole set on every batch.
                take = mine & np.fromiter((rid not in self._restored_ids for rid in frame["request_id"]),
                                          dtype=bool, count=len(frame))
            if take.any():
                self._absorb(frame["request_id"][take].tolist(), frame["prediction"].to_numpy()[take],
                             *(np.asarray(batch[k])[take] for k in ("x_num", "x_cat", "scores", "received_at")),
                             feed_online=True)
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
            self.counters["labels_matched"] += self._match_labels(ids, labels)
            self._count_rows("label", len(ids))
            n += len(ids)
        return n

    def _track_versions(self, versions: np.ndarray, received_at: np.ndarray) -> np.ndarray:
        """Which rows the reference version served; extends the trailing run of another version's rows
        (counting only rows answered since the last re-base)."""
        reference = self.controller.state.reference_version
        mine = versions == reference
        versions = versions[received_at >= self._rebased_at]
        if len(versions) == 0:
            return mine
        version, run = None, 0
        for v in versions[::-1]:
            if v == reference or (version is not None and v != version):
                break
            version, run = v, run + 1
        if run == len(versions) and self._other_run[0] == version:
            run += self._other_run[1]  # the whole batch continues the run
        self._other_run = (version, run)
        return mine

    def _follow_served_version(self) -> None:
        """Re-base on the version Serve has answered with for a while (see the module docstring)."""
        version, run = self._other_run
        if (version is None or run < self.cfg.drift.window.test_every_rows or version in self._unloadable
                or not self.cfg.drift.monitor.follow_served_version
                or self.controller.state.phase not in (Phase.idle, Phase.cooldown, Phase.gave_up)):
            return
        previous = self.controller.state.reference_version
        try:
            self._rebase_onto(version)
        except Exception as exc:  # not in this registry (another model's?), or its files fail the checksums
            self._unloadable.add(version)
            self.events.write("rebase_failed", f"Serve answers with {version}, which cannot be loaded from the "
                              f"registry ({type(exc).__name__}: {exc}); still testing against {previous}",
                              version=version, previous=previous)
            return
        restored = self._restore_windows()
        self.events.write("rebased", f"Serve answers with {version} ({run} live rows in a row), not {previous}: it "
                          f"was swapped outside this monitor; detectors re-based on {version}'s reference sample "
                          f"({restored} of its live rows reloaded)", version=version, previous=previous,
                          reason="served_version_changed", rows=run)

    def _test_round(self, now: float) -> None:
        size = self.cfg.drift.window.size
        w = self.window
        results = self.suite.test_window(w.x_num[-size:], w.x_cat[-size:], w.scores[-size:])
        concept_rows = self.cfg.drift.detectors.concept.window_rows
        if self.suite.cfg.concept.method.value == "fet" and len(self.errors) >= concept_rows \
                and self.labels_since_test > 0:
            result = self.suite.test_concept(np.asarray(self.errors))
            if result is not None:
                results.append(result)
        results += self._online_results
        self._online_results = []
        self.rows_since_test = 0
        self.labels_since_test = 0
        self.counters["rounds"] += 1
        votes = [r.detector for r in results if r.vote and r.drift]
        drifted = len(set(votes)) >= self.cfg.drift.window.votes_required
        if self.controller.state.phase in (Phase.idle, Phase.cooldown):  # no episode in flight: the onset may move
            if drifted:
                if self._first_flag_at is None:
                    self._first_flag_at = float(w.received_at[-size:].min())
                self._estimate_onset()
            else:
                self._forget_onset()
        metrics = self._monitor_metrics()
        for r in results:
            if metrics:
                metrics.result(r.detector, r.p_value, r.statistic, r.drift)
        self.last_results = [{**r.to_dict(), "at": _iso(now)} for r in results]
        decision = self.controller.observe(drifted, now)
        self.history.append({"round": self.counters["rounds"], "at": now, "rows": self.counters["rows"],
                             "drifted": drifted, "votes": sorted(set(votes)), "phase": self.controller.state.phase.value,
                             "reference_version": self.controller.state.reference_version,
                             "results": [r.to_dict() for r in results]})
        log.info("round %d: %s -> %s", self.counters["rounds"],
                 ", ".join(f"{r.detector}={'DRIFT' if r.drift else 'ok'}" for r in results), decision.reason)
        if decision.action is Action.submit and decision.episode_id != self._announced:
            self._announced = decision.episode_id  # once per episode, also while it waits for labels
            self.events.write("drift_detected", f"drift confirmed by {sorted(set(votes))} in "
                              f"{self.controller.state.consecutive} rounds in a row; starting episode "
                              f"{decision.episode_id}", episode=decision.episode_id, votes=sorted(set(votes)),
                              results=self.last_results, rows_seen=self.counters["rows"],
                              onset=_iso(self.onset_at) if self.onset_at else None, onset_detail=self.onset_detail)
            if metrics:
                metrics.episodes.inc(1, tags={"model": self.model})
        if decision.action is Action.submit:
            self._submit(decision, now)
        elif decision.action is Action.gave_up:
            self._give_up(decision, now)

    def _estimate_onset(self) -> None:
        """Where the drift began (``onset``), searched over one window before the first flagged window and
        every row since; the first flagged window's oldest row when the rows show no clear change."""
        w = self.window
        self.onset_at, self.onset_detail = onset.since_first_flag(
            w.x_num, w.x_cat, w.scores, w.received_at, self.labelled_errors, self._first_flag_at,
            self.cfg.drift.window.size)

    def _forget_onset(self) -> None:
        self.onset_at = None
        self.onset_detail = None
        self._first_flag_at = None

    # ---- retrain jobs ------------------------------------------------------------------------------------
    def _job_client(self):
        if self._client is None:
            from foundry import ray_runtime

            self._client = ray_runtime.job_client(self.cfg.cluster)
        return self._client

    def _submit(self, decision, now: float) -> None:
        from foundry import job_submission

        episode = decision.episode_id
        min_new = int(decision.detail.get("min_new_rows", 0))
        if self._labels_when_short == self.counters["labels"] or \
                self.counters["labels"] - self._data_labels_at < min_new:
            # Still short of labels and none (or too few to make up the new rows) arrived since the last
            # look: reading every stored label again (one file per /feedback request) would only repeat it.
            self.controller.cancel()
            self._say_waiting(episode, decision.attempt, min_new)
            return
        data = retrain.prepare_dataset(self.cfg, episode, self.reference, since=self.onset_at,
                                       generation=decision.data_generation or 1, min_new_rows=min_new)
        self._labels_when_short = None if data is not None else self.counters["labels"]
        if data is None:
            self.controller.cancel()
            self._say_waiting(episode, decision.attempt, min_new)
            return
        if decision.attempt == 1 or min_new:
            self._data_labels_at = self.counters["labels"]  # a new data set: the next one needs labels after it
        self._save_state()  # the submission id is on storage before the job exists: a restart re-finds it
        overrides = retrain.job_arguments(self.cfg, self.controller.state.reference_version, data, episode)
        meta = job_submission.metadata("retrain", self.model, trigger="drift", episode=episode)
        started = time.perf_counter()
        try:
            sub = job_submission.submit(self._job_client(), retrain.TRAIN_MODULE, overrides, meta,
                                        submission_id=decision.submission_id)
        except Exception as exc:
            self.events.write("retrain_failed", f"could not submit {decision.submission_id}: {exc}",
                              episode=episode, attempt=decision.attempt, submission_id=decision.submission_id)
            self._retrain_metric("failed")
            self._after_job(self.controller.job_finished("failed", now, f"submit failed: {exc}"), now)
            return
        self._retrain_metric("submitted")
        new = f", {data.new_rows} of them new since the rejected attempt" if data.new_rows is not None else ""
        self.events.write("retrain_submitted", f"{decision.reason}: submitted {sub.submission_id} "
                          f"({data.rows} rows: {data.labelled_live_rows} labelled live + {data.reference_rows} "
                          f"reference{new})" + (" (it already existed)" if sub.already_existed else ""),
                          episode=episode, attempt=decision.attempt, submission_id=sub.submission_id,
                          data=data.uri, data_generation=decision.data_generation, rows=data.rows,
                          new_rows=data.new_rows, overrides=overrides,
                          submit_s=round(time.perf_counter() - started, 3))  # the event is written after the call

    def _poll_job(self, now: float) -> None:
        s = self.controller.state
        sid = s.submission_id
        try:
            status = self._job_client().get_job_status(sid).value
        except Exception as exc:
            if not _job_is_gone(exc):
                # No answer (a dashboard restart, the network): the job may still be running. It is
                # "unknown", never "failed": a retry now could run beside it and both could promote.
                self._status_errors += 1
                if self._status_errors == MAX_STATUS_ERRORS:
                    self.events.write("retrain_status_unknown", f"{sid}: the Jobs API did not answer "
                                      f"{MAX_STATUS_ERRORS} polls in a row ({exc}); waiting for it",
                                      episode=self.controller.current_episode_id, submission_id=sid)
                return
            status = f"LOST (the cluster does not know the job: {exc})"  # e.g. the cluster was restarted
        self._status_errors = 0
        if status in ("PENDING", "RUNNING"):
            timeout = self.cfg.drift.retrain.job_timeout_s
            if s.submitted_at is not None and now - s.submitted_at > timeout and self._stopping != sid:
                try:
                    self._job_client().stop_job(sid)
                    self._stopping = sid  # a retry waits until the job is confirmed stopped
                except Exception as exc:
                    log.warning("could not stop %s: %s", sid, exc)
            return
        if self._stopping == sid:
            status = f"TIMEOUT after {self.cfg.drift.retrain.job_timeout_s:.0f} s (then {status})"
            self._stopping = None
        episode = self.controller.current_episode_id
        outcome = retrain.read_outcome(self.cfg, episode, status, sid)
        if outcome.outcome == "failed":
            self._retrain_metric("failed")
            cause = self._failure_cause(sid)
            self.events.write("retrain_failed", f"{sid}: {outcome.detail}" + (f": {cause}" if cause else ""),
                              episode=episode, submission_id=sid, attempt=s.attempt, cause=cause)
        else:
            self._retrain_metric("succeeded")
            self.events.write("retrain_finished", f"{sid} registered {outcome.version}: {outcome.detail}",
                              episode=episode, submission_id=sid, version=outcome.version, metrics=outcome.metrics,
                              champion_metrics=outcome.champion_metrics)
        decision = self.controller.job_finished(outcome.outcome, now, outcome.detail)
        if outcome.outcome == "promoted":
            self._retrain_metric("promoted")
            self.events.write("promoted", f"{outcome.version} is the new {self.cfg.promotion.alias}: "
                              f"{outcome.detail}", episode=episode, version=outcome.version)
        elif outcome.outcome == "rejected":
            self._retrain_metric("rejected")
            self.events.write("rejected", f"{outcome.version} not promoted, {self.cfg.promotion.alias} unchanged: "
                              f"{outcome.detail}", episode=episode, version=outcome.version)
        self._after_job(decision, now)
        if outcome.outcome == "promoted":
            self._roll_out(outcome.version, episode)

    def _failure_cause(self, sid: str) -> str | None:
        """Why a job failed, from the end of its log: the ``error: ...`` line every Foundry command prints
        for an expected failure, else the last lines (a traceback's end)."""
        try:
            logs = self._job_client().get_job_logs(sid)
        except Exception:
            return None
        lines = [line.strip() for line in (logs or "").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        return (errors[-1] if errors else " | ".join(lines[-3:]))[:1000] or None

    def _after_job(self, decision, now: float) -> None:
        if decision.action in (Action.exhausted, Action.finished):
            self._forget_onset()  # the episode is over: the next one finds its own onset
        if decision.action is Action.exhausted:
            self._retrain_metric("exhausted")
            self.events.write("retries_exhausted", decision.reason, episode=decision.episode_id,
                              attempt=decision.attempt)
        elif decision.action is Action.gave_up:
            self._give_up(decision, now)
        elif decision.detail.get("retry_in_s") is not None:
            self.events.write("retrain_retry_scheduled", decision.reason, episode=decision.episode_id,
                              attempt=decision.attempt, retry_in_s=decision.detail["retry_in_s"])

    def _say_waiting(self, episode: str, attempt: int, min_new: int) -> None:
        if min_new:
            note = f"attempt {attempt} of episode {episode} waits for {min_new} labelled live rows that the " \
                   "rejected attempt's data set did not have"
        else:
            note = f"episode {episode} waits for labels: fewer than {self.cfg.drift.retrain.min_labelled_rows} " \
                   "labelled live rows since the drift began"
        if self._waiting_note != note:
            self.events.write("retrain_waiting", note, episode=episode, attempt=attempt,
                              onset=_iso(self.onset_at) if self.onset_at else None)
            self._waiting_note = note

    def _give_up(self, decision, now: float) -> None:
        self._retrain_metric("gave_up")
        self.events.write("gave_up", f"{decision.reason}; no more retrains for this drift: accepting the new "
                          "normal (the detectors re-base on recent labelled live rows, production unchanged)",
                          episode=decision.episode_id, attempts=decision.attempt, **decision.detail)
        self._accept_new_normal(now)

    def _accept_new_normal(self, now: float) -> None:
        """Re-base the detectors on recent labelled live rows with the production model (``new_normal``);
        on failure (too few rows yet) the controller stays in ``gave_up``, retraining nothing, and this is
        tried again once more labels arrived."""
        if self._new_normal_tried == self.counters["labels"]:
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
            self._load_reference(version, baseline)
        except Exception as exc:
            self._new_normal_tried = self.counters["labels"]
            note = f"cannot accept the new normal for {version} yet ({type(exc).__name__}: {exc}); no retrains " \
                   "meanwhile"
            if self._new_normal_note != note:
                self.events.write("rebase_failed", note, version=version, previous=version, reason="new_normal",
                                  episode=episode)
                self._new_normal_note = note
            return
        self.new_normal = baseline
        self._new_normal_tried = None
        self._restored_ids = set()
        self._forget_onset()
        self.controller.accept_new_normal(now)
        self.events.write("rebased", f"accepted the new normal: detectors of {version} re-based on {len(rows)} "
                          f"recent labelled live rows (the drift of {episode} could not be healed); no new episode "
                          f"before {_iso(self.controller.state.wait_until)}", version=version, previous=version,
                          reason="new_normal", episode=episode, rows=len(rows), reference=uri)

    def _roll_out(self, version: str, episode: str) -> None:
        if self.cfg.drift.retrain.rollout:
            from foundry.serving import control

            started = time.perf_counter()
            try:
                control.set_model_version(self.cfg.serve.app_name, version, self.cfg)
            except Exception as exc:
                self.events.write("rollout_failed", f"could not point Serve app {self.cfg.serve.app_name!r} at "
                                  f"{version}: {exc}; still monitoring against {self.suite.version}",
                                  episode=episode, version=version)
                return
            self.events.write("rolled_out", f"Serve app {self.cfg.serve.app_name!r} serves {version} (in place)",
                              episode=episode, version=version, seconds=round(time.perf_counter() - started, 2))
        else:
            # Serve still answers with the old version: its traffic is still tested against its own
            # reference, and the monitor re-bases once Serve answers with the new one.
            log.info("drift.retrain.rollout=false: %s promoted, Serve left as it is", version)
            return
        previous = self.controller.state.reference_version
        self._rebase_onto(version)
        self.events.write("rebased", f"detectors re-based from {previous} to {version}'s reference sample",
                          episode=episode, version=version, previous=previous)

    # ---- state and status ---------------------------------------------------------------------------------
    def _read_state(self) -> dict:
        if not storage.exists(self.fs, self.state_path):
            return {}
        try:
            return json.loads(storage.read_bytes(self.fs, self.state_path))
        except ValueError as exc:
            log.error("unreadable monitor state %s (%s); starting fresh", self.state_path, exc)
            return {}

    def _save_state(self) -> None:
        state = {"model": self.model, "controller": self.controller.state.to_dict(), "counters": self.counters,
                 "onset_at": self.onset_at, "onset_detail": self.onset_detail, "first_flag_at": self._first_flag_at,
                 "data_labels_at": self._data_labels_at, "new_normal": self.new_normal,
                 "last_results": self.last_results, "saved_at": _iso(self.clock())}
        storage.write_bytes_atomic(self.fs, self.state_path, json.dumps(state, default=str).encode())

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"model": self.model, "reference_version": self.controller.state.reference_version,
                    "controller": self.controller.state.to_dict(), "counters": dict(self.counters),
                    "window_rows": len(self.window), "labelled_window_rows": len(self.errors),
                    "onset_at": _iso(self.onset_at) if self.onset_at else None, "onset_detail": self.onset_detail,
                    "new_normal": self.new_normal,
                    "queued_batches": self._queue.qsize(), "last_results": self.last_results}

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

    # ---- metrics -------------------------------------------------------------------------------------------
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


def _job_is_gone(exc: BaseException) -> bool:
    """The Jobs API answered that it does not know the job (HTTP 404), as opposed to not answering."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("status code 404" in text or "does not exist" in text)


def _epoch(values: pd.Series) -> np.ndarray:
    return (pd.to_datetime(values, utc=True).astype("int64") / 1e9).to_numpy(np.float64)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")
