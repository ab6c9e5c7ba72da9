"""Replay: the monitor's decisions on stored or generated traffic, offline and fast.

``Replay`` runs the monitor's own decision path (``LiveWindows`` with the version's detectors and
sequential alarm, the false-alarm budget, the harm estimate, ``RetrainController``) over a stream
of rows, without Ray, HTTP or storage writes: how a user tunes ``conf/drift`` on their own history
before turning retraining on, and how ``benchmarks/drift_bench.py`` measures the alarm.

Rows are fed in batches of ``batch_rows`` (as a Serve replica's sink flushes them); labels, when the
stream has the label column, arrive ``label_delay_rows`` rows after their row (0: at once). Time is
rows: every episode the monitor would start is counted and answered at once (the controller returns
to idle), so cooldowns hide nothing. A benign shift is counted, never an episode.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from foundry.config import AlarmMethod, DriftConfig, FoundryConfig
from foundry.drift.controller import Action, ControllerState, Phase, RetrainController
from foundry.drift.detectors import build_suite, load_or_build
from foundry.drift.windows import LiveWindows


@dataclass
class ReplaySummary:
    version: str
    rows: int = 0
    labels: int = 0
    episodes: int = 0
    first_episode_row: int | None = None
    alarms: dict[str, int] = field(default_factory=dict)  # by kind: harm, drift, input, benign
    benign_shifts: int = 0
    onset_row: int | None = None
    false_episodes: int | None = None  # episodes started before onset_row
    false_episodes_per_million_clean_rows: float | None = None
    detection_delay_rows: int | None = None  # first alarm of any kind at or after the onset
    # First labelled-error alarm after the onset, in labels of rows at or after the onset (concept and label
    # shift change no input: only labels can show them, and a batch of rows carries a batch of labels).
    detection_delay_labelled_rows: int | None = None
    episode_delay_rows: int | None = None  # first episode at or after the onset
    label_delay_rows: int = 0
    seconds: float = 0.0
    rows_per_s: float = 0.0
    monitor_cpu_ms_per_1000_rows: float = 0.0  # the decision path alone (prediction excluded)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Replay:
    def __init__(self, cfg: FoundryConfig, version_dir, version: str, label_delay_rows: int = 0,
                 batch_rows: int = 500, onset_row: int | None = None, say=None):
        from foundry.drift.alarm import SequentialAlarm
        from foundry.models.predictor import Predictor

        self.cfg = cfg
        self.predictor = Predictor.from_dir(version_dir)
        reference = pd.read_parquet(f"{version_dir}/reference.parquet")
        suite = (load_or_build(cfg.drift.detectors, version_dir, version, say=lambda _: None)
                 if cfg.drift.alarm.method is AlarmMethod.windows or cfg.drift.alarm.diagnose
                 else build_suite(_no_detectors(cfg.drift), version_dir, version, say=lambda _: None))
        alarm = (SequentialAlarm.fit(cfg.drift.alarm, self.predictor, reference)
                 if cfg.drift.alarm.method is AlarmMethod.sequential else None)
        self.windows = LiveWindows(cfg.drift, suite, alarm)
        consecutive = 1 if alarm is not None else cfg.drift.window.consecutive
        self.controller = RetrainController(cfg.drift.retrain, cfg.model_name, consecutive,
                                            ControllerState(reference_version=version))
        self.summary = ReplaySummary(version=version, onset_row=onset_row, label_delay_rows=label_delay_rows)
        self.label_delay_rows = label_delay_rows
        self.batch_rows = batch_rows
        self.say = say or (lambda _: None)
        self.waiting: deque = deque()  # (last row, ids, labels, first row) whose labels are not due yet
        self.labels_before_onset = 0  # labels delivered for rows before onset_row
        self.cpu = 0.0

    def feed(self, frame: pd.DataFrame, first_row: int) -> None:
        """Rows ``first_row ...`` of the stream (features, optionally the label and a request id)."""
        label = self.cfg.data.label
        features = [f.name for f in self.cfg.data.features]
        missing = [f for f in features if f not in frame.columns]
        if missing:
            from foundry.errors import DataSourceError

            raise DataSourceError(f"rows {first_row}-{first_row + len(frame) - 1} of the stream lack the feature "
                                  f"column(s) {missing} of data '{self.cfg.data.name}' (columns: {list(frame.columns)})")
        pred = self.predictor.predict(frame[features])
        scores = pred.proba if pred.proba is not None else pred.values.astype(np.float64)
        ids = (frame["request_id"].astype(str).to_numpy() if "request_id" in frame.columns
               else np.array([f"r{first_row + i}" for i in range(len(frame))], dtype=object))
        labels = frame[label].to_numpy() if label in frame.columns else None
        x_num, x_cat = pred.encoded["x_num"], pred.encoded["x_cat"]
        for start in range(0, len(frame), self.batch_rows):
            end = min(start + self.batch_rows, len(frame))
            started = time.process_time()
            rows = slice(start, end)
            at = np.arange(first_row + start, first_row + end, dtype=np.float64)  # time is rows
            self.windows.absorb(list(ids[rows]), pred.values[rows], x_num[rows], x_cat[rows], scores[rows], at,
                                feed_online=True)
            self.summary.rows = first_row + end
            if labels is not None:
                self.waiting.append((first_row + end - 1, list(ids[rows]), list(labels[rows]), first_row + start))
                self._deliver_labels()
            self._decide()
            self.cpu += time.process_time() - started

    def _deliver_labels(self) -> None:
        while self.waiting and self.waiting[0][0] + self.label_delay_rows < self.summary.rows:
            last, ids, labels, first = self.waiting.popleft()
            onset = self.summary.onset_row
            if onset is not None:
                self.labels_before_onset += max(0, min(last + 1, onset) - first)
            self.windows.match_labels(ids, labels)
            self.summary.labels += len(ids)

    def _decide(self) -> None:
        w = self.cfg.drift.window
        if not self.windows.due(w.test_every_rows, w.size):
            return
        alarms = []
        if self.windows.alarm is not None:
            alarms, _ = self.windows.alarm_round(w.size)
            drifted = any(a.starts_episode for a in alarms)
            for a in alarms:
                self.summary.alarms[a.kind] = self.summary.alarms.get(a.kind, 0) + 1
                self.summary.benign_shifts += a.kind == "benign"
                self._first_after_onset("detection_delay_rows", a.row)
                s = self.summary
                if a.family == "labelled" and s.detection_delay_labelled_rows is None and s.onset_row is not None \
                        and a.row >= s.onset_row:
                    s.detection_delay_labelled_rows = a.labels - self.labels_before_onset
                self.say(f"row {a.row}: {a.kind} alarm ({a.family}: {a.signal}; evidence over {a.run_rows} rows)")
        else:
            results = self.windows.test(w.size, self.cfg.drift.detectors.concept.window_rows)
            drifted = len({r.detector for r in results if r.vote and r.drift}) >= w.votes_required
            if drifted:
                self._first_after_onset("detection_delay_rows", self.summary.rows)
        decision = self.controller.observe(drifted, float(self.summary.rows))
        if decision.action is Action.submit:
            s = self.summary
            # The row that decided it: the alarm's own (the sequential alarm checks every row), else the round's.
            row = min((a.row for a in alarms if a.starts_episode), default=s.rows)
            s.episodes += 1
            if s.first_episode_row is None:
                s.first_episode_row = row
            if s.onset_row is not None and row < s.onset_row:
                s.false_episodes = (s.false_episodes or 0) + 1
            self._first_after_onset("episode_delay_rows", row)
            self.say(f"row {row}: episode {decision.episode_id} would start ({decision.reason})")
            state = self.controller.state  # answered at once: every further alarm counts
            state.phase, state.consecutive, state.submission_id = Phase.idle, 0, None

    def _first_after_onset(self, key: str, row: int) -> None:
        s = self.summary
        if s.onset_row is not None and row >= s.onset_row and getattr(s, key) is None:
            setattr(s, key, row - s.onset_row)

    def finish(self, seconds: float) -> ReplaySummary:
        s = self.summary
        s.seconds = round(seconds, 3)
        s.rows_per_s = round(s.rows / seconds, 1) if seconds > 0 else math.inf
        s.monitor_cpu_ms_per_1000_rows = round(1000 * self.cpu / max(s.rows, 1) * 1000, 3)
        clean = s.rows if s.onset_row is None else min(s.onset_row, s.rows)
        if s.onset_row is not None:
            s.false_episodes = s.false_episodes or 0
            s.false_episodes_per_million_clean_rows = round(s.false_episodes / max(clean, 1) * 1e6, 3)
        return s


def _no_detectors(drift: DriftConfig):
    """A detector config with nothing enabled (the sequential alarm without diagnosis needs no suite)."""
    import copy

    det = copy.deepcopy(drift.detectors)
    for name in ("tabular", "multivariate", "prediction", "concept", "online"):
        getattr(det, name).enabled = False
    return det


def replay_frames(replay: Replay, frames) -> ReplaySummary:
    """Feed an iterable of DataFrames (consecutive chunks of the stream) and summarise."""
    started = time.perf_counter()
    row = 0
    for frame in frames:
        replay.feed(frame.reset_index(drop=True), row)
        row += len(frame)
    return replay.finish(time.perf_counter() - started)


__all__ = ["Replay", "ReplaySummary", "replay_frames"]
