"""The monitor's live windows: the newest rows as the detectors test them, and labels matched to them.

Pure state, no I/O and no locks (``DriftMonitor`` owns the lock and calls these from its round):

- ``Window``: the newest ``retain_rows`` rows as matrices (the preprocessed inputs and the model's
  scores) with their arrival times: what the windowed detectors and the onset estimate read;
- ``LiveWindows``: the window plus the label side: predictions waiting for a label (``pending``),
  labels that came before their row (``early``: rows and labels travel in separate queues, so either
  may arrive first), and the error stream of matched labels the concept detector tests. It is tied to
  one reference (a detector suite and the predictor that encodes stored rows); ``reset`` starts it
  over for a new one;
- ``VersionTracker``: which rows the reference version served, and the trailing run of rows another
  version answered (a roll-out or rollback made outside the monitor, which it follows once the run
  is ``test_every_rows`` long).

Why windows hold only the reference version's rows: testing one version's traffic against another
version's reference sample would report the swap itself as drift.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from foundry.config import DriftConfig
from foundry.drift.alarm import LABELLED, Alarm, SequentialAlarm
from foundry.drift.batch import LiveBatch
from foundry.drift.detectors import DetectorResult, DetectorSuite


@dataclass
class Window:
    """The newest live rows, as the detectors need them (bounded by ``retain_rows``)."""

    x_num: np.ndarray
    x_cat: np.ndarray
    scores: np.ndarray
    received_at: np.ndarray  # epoch seconds

    @classmethod
    def empty(cls) -> Window:
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


@dataclass(frozen=True)
class Encoded:
    """Stored rows encoded by the reference's predictor (the restore path: matrices are not stored)."""

    request_ids: list[str]
    predictions: np.ndarray
    x_num: np.ndarray
    x_cat: np.ndarray
    scores: np.ndarray
    received_at: np.ndarray


def encode(frame: pd.DataFrame, predictor) -> Encoded:
    """Stored raw rows (``LiveStore``'s frame) as the windows hold them; pure, so it runs outside the lock."""
    encoded = predictor.preprocessor.transform(frame)
    preds = predictor.predict(frame)
    scores = preds.proba if preds.proba is not None else preds.values.astype(np.float64)
    return Encoded(frame["request_id"].tolist(), frame["prediction"].to_numpy(), encoded["x_num"],
                   encoded["x_cat"], np.asarray(scores), epoch(frame["received_at"]))


class LiveWindows:
    """The rows and labels of the current reference (see the module docstring)."""

    def __init__(self, drift: DriftConfig, suite: DetectorSuite, alarm: SequentialAlarm | None = None):
        self.keep = drift.monitor.retain_rows
        self.diagnose = drift.alarm.diagnose
        self.concept_rows = max(drift.detectors.concept.window_rows, 1)
        self.online_results: list[DetectorResult] = []  # online detectors' verdicts since the last round
        self.restored_ids: set[str] = set()  # request ids the windows were last reloaded with
        self.reset(suite, alarm)

    def reset(self, suite: DetectorSuite, alarm: SequentialAlarm | None = None) -> None:
        """Start over for a new reference (its suite, and its sequential alarm when ``drift.alarm.method``
        is sequential); the online verdicts and restored ids carry over."""
        self.suite = suite
        self.alarm = alarm
        self.window = Window.empty()
        self.pending: OrderedDict[str, Any] = OrderedDict()  # request_id -> (prediction, received_at), awaiting a label
        self.early: OrderedDict[str, Any] = OrderedDict()  # request_id -> label that came before its row
        self.errors: deque = deque(maxlen=self.concept_rows)
        # (received_at, error) of every matched label, for the onset estimate (longer than ``errors``).
        self.labelled_errors: deque[tuple[float, float]] = deque(maxlen=self.keep)
        self.rows_since_test = 0
        self.labels_since_test = 0

    # ---- rows ---------------------------------------------------------------------------------------------
    def absorb_batch(self, batch: LiveBatch, frame: pd.DataFrame, mine: np.ndarray) -> int:
        """Take the rows of a queued batch that the reference version served (``mine``) and that are not
        already in the windows (reloaded from storage); returns the early labels this matched."""
        take = mine
        if self.restored_ids:  # a batch on storage when the windows were reloaded is in them already
            # Set lookups per row (O(batch)): Series.isin would hash the whole set on every batch.
            take = mine & np.fromiter((rid not in self.restored_ids for rid in frame["request_id"]),
                                      dtype=bool, count=len(frame))
        if not take.any():
            return 0
        rows = batch.select(take)
        return self.absorb(frame["request_id"][take].tolist(), frame["prediction"].to_numpy()[take], rows.x_num,
                           rows.x_cat, rows.scores, rows.received_at, feed_online=True)

    def absorb_encoded(self, rows: Encoded) -> int:
        return self.absorb(rows.request_ids, rows.predictions, rows.x_num, rows.x_cat, rows.scores,
                           rows.received_at, feed_online=False)

    def absorb(self, request_ids, predictions, x_num, x_cat, scores, received_at, feed_online: bool) -> int:
        """Append rows (and feed the online detectors); returns how many early labels they matched."""
        self.window.append(np.asarray(x_num, np.float32), np.asarray(x_cat, np.int64), np.asarray(scores),
                           np.asarray(received_at, np.float64), self.keep)
        early_ids, early_labels = [], []
        for rid, pred, at in zip(request_ids, predictions, np.asarray(received_at, np.float64), strict=True):
            self.pending[rid] = (pred, float(at))
            if rid in self.early:
                early_ids.append(rid)
                early_labels.append(self.early.pop(rid))
        while len(self.pending) > self.keep:
            self.pending.popitem(last=False)
        matched = self.match_labels(early_ids, early_labels) if early_ids else 0
        self.rows_since_test += len(request_ids)
        if self.alarm is not None:
            self.alarm.feed_rows(np.asarray(x_num), np.asarray(x_cat), np.asarray(scores))
        if feed_online:
            result = self.suite.update_online(np.asarray(x_num, np.float32), np.asarray(x_cat, np.int64))
            if result is not None:
                self.online_results.append(result)
        return matched

    # ---- labels -------------------------------------------------------------------------------------------
    def match_labels(self, request_ids: list[str], labels: list[Any]) -> int:
        """Judge the predictions these labels belong to (the error stream); a label whose row has not
        arrived yet waits in ``early``. Returns the labels matched."""
        matched_preds, matched_labels, matched_at = [], [], []
        for rid, label in zip(request_ids, labels, strict=True):
            entry = self.pending.pop(rid, None)
            if entry is not None:
                matched_preds.append(entry[0])
                matched_at.append(entry[1])
                matched_labels.append(label)
            else:  # the label overtook its row (separate queues): match it when the row arrives
                self.early[rid] = label
        while len(self.early) > self.keep:
            self.early.popitem(last=False)
        if matched_preds:
            errs = self.suite.errors(np.asarray(matched_preds), np.asarray(matched_labels))
            self.errors.extend(errs.tolist())
            self.labelled_errors.extend(zip(matched_at, errs.astype(np.float64).tolist(), strict=True))
            self.labels_since_test += len(errs)
            if self.alarm is not None:
                self.alarm.feed_labels(errs)
            if self.suite.cfg.concept.method.value == "fet_online":
                result = self.suite.test_concept(errs)
                if result is not None:
                    self.online_results.append(result)
        return len(matched_preds)

    # ---- a test round -------------------------------------------------------------------------------------
    def due(self, test_every_rows: int, size: int) -> bool:
        """A round is due: the sequential alarm raised something, or ``test_every_rows`` rows came (the
        windowed tests need ``size`` of them; the sequential alarm reports its statistics then)."""
        if self.alarm is not None:
            return bool(self.alarm.fired) or self.rows_since_test >= test_every_rows
        return self.rows_since_test >= test_every_rows and len(self.window) >= size

    def alarm_round(self, size: int) -> tuple[list[Alarm], list[DetectorResult]]:
        """The sequential alarm's raised alarms since the last round (each with ``detail["since"]``: when
        its evidence started building) and one result per signal family; on an alarm, with
        ``drift.alarm.diagnose``, the windowed tests on the alarm's rows too (they name the drifted
        columns; they never vote)."""
        alarms = self.alarm.take()
        w = self.window
        for a in alarms:
            if a.family == LABELLED and self.labelled_errors:
                a.detail["since"] = self.labelled_errors[-min(max(a.run_rows, 1), len(self.labelled_errors))][0]
            elif len(w):
                back = self.alarm.rows_seen - a.row + max(a.run_rows, 1)
                a.detail["since"] = float(w.received_at[-min(back, len(w))])
        stats = self.alarm.statistics()
        raised = {a.family for a in alarms}
        for a in alarms:  # an alarm resets its evidence: report the value it crossed at, not the reset one
            if a.kind != "benign":
                stats[a.family] = max(a.log_statistic, stats[a.family])
        results = [DetectorResult(detector=f"alarm.{family}", drift=family in raised, p_value=None,
                                  statistic=round(value, 4) if np.isfinite(value) else None,
                                  threshold=round(self.alarm.log_threshold, 4), vote=True, rows=self.rows_since_test)
                   for family, value in stats.items()]
        for r in self.online_results:  # alibi's online detectors diagnose beside the alarm; they never vote
            r.vote = False
        results += self.online_results
        self.online_results = []
        if alarms and self.diagnose and len(w) >= 20:
            rows = min(size, len(w), max(max(a.run_rows for a in alarms), 50))
            for r in self.suite.test_window(w.x_num[-rows:], w.x_cat[-rows:], w.scores[-rows:]):
                r.vote = False
                results.append(r)
        self.rows_since_test = 0
        self.labels_since_test = 0
        return alarms, results

    def test(self, size: int, concept_rows: int) -> list[DetectorResult]:
        """Every windowed detector on the last ``size`` rows, the concept detector on the error stream
        (once it holds ``concept_rows`` and a label came since the last round), and the online verdicts
        gathered since; starts counting towards the next round."""
        w = self.window
        results = self.suite.test_window(w.x_num[-size:], w.x_cat[-size:], w.scores[-size:])
        if self.suite.cfg.concept.method.value == "fet" and len(self.errors) >= concept_rows \
                and self.labels_since_test > 0:
            result = self.suite.test_concept(np.asarray(self.errors))
            if result is not None:
                results.append(result)
        results += self.online_results
        self.online_results = []
        self.rows_since_test = 0
        self.labels_since_test = 0
        return results


class VersionTracker:
    """Which live rows the reference version served, and the trailing run of another version's rows."""

    def __init__(self):
        # The trailing run of live rows served by one version other than the reference: (version, rows).
        self.other_run: tuple[str | None, int] = (None, 0)
        # Wall time of the last re-base: rows answered before it belong to the old world (a roll-out's
        # stragglers of the previous version must not look like a rollback).
        self.rebased_at = 0.0
        self.unloadable: set[str] = set()  # versions a re-base onto failed (said once each)

    def track(self, reference: str, versions: np.ndarray, received_at: np.ndarray) -> np.ndarray:
        """Which rows ``reference`` served; extends the trailing run of another version's rows
        (counting only rows answered since the last re-base)."""
        mine = versions == reference
        versions = versions[received_at >= self.rebased_at]
        if len(versions) == 0:
            return mine
        version, run = None, 0
        for v in versions[::-1]:
            if v == reference or (version is not None and v != version):
                break
            version, run = v, run + 1
        if run == len(versions) and self.other_run[0] == version:
            run += self.other_run[1]  # the whole batch continues the run
        self.other_run = (version, run)
        return mine

    def to_follow(self, test_every_rows: int) -> str | None:
        """The version Serve has answered with for ``test_every_rows`` rows in a row, if it may load."""
        version, run = self.other_run
        if version is None or run < test_every_rows or version in self.unloadable:
            return None
        return version

    def rebased(self, at: float) -> None:
        self.other_run = (None, 0)
        self.rebased_at = at


def epoch(values: pd.Series) -> np.ndarray:
    return (pd.to_datetime(values, utc=True).astype("int64") / 1e9).to_numpy(np.float64)


__all__ = ["Encoded", "LiveWindows", "VersionTracker", "Window", "encode", "epoch"]
