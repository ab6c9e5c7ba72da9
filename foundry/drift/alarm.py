"""The sequential alarm: one false-alarm budget for the whole monitor, and harm before change.

``SequentialAlarm`` turns every live row and every label into evidence (``foundry.drift.evidence``) in
three families of signals, each with its share of the budget (``drift.alarm.weights``):

- **input**: for each numeric input, its reference mid-PIT ("is it larger / smaller than the
  reference?"); each missing-value indicator and each category (the unknown index included: a new
  category) as a rate; for classification the model's scores, as a PIT. These say the world changed.
- **estimated** (harm without labels): for classification the calibrated expected error of each row,
  ``1 - max_k p_k`` (confidence-based performance estimation: with probabilities calibrated by
  temperature scaling at training time, its mean is the accuracy the model will turn out to have,
  as long as P(y | x) holds), against the reference's expected error plus ``harm_tolerance``; for
  regression the prediction's PIT (the prediction-drift signal).
- **labelled** (harm seen in labels): the 0/1 error of each labelled row (regression: whether the
  absolute error exceeds the reference's 90th percentile) against the reference's rate plus
  ``harm_tolerance`` (an exact upper bound of that rate: Clopper-Pearson for classification, the order
  statistic's Beta law for the regression quantile). Labels may come late: they are evidence when they
  arrive.

What an alarm means is the ``drift.alarm.policy``'s call. ``harm`` (the default): an estimated or
labelled alarm starts an episode (``kind="harm"``); an input alarm is reported (``kind="input"``)
and watched for ``benign_after_rows`` rows: harm evidence in that time starts the episode, none means
a ``benign`` shift (reported, no retrain), and the input signals are re-based on the watched rows so
the same shift is not reported again. ``harm_or_unlabelled_drift``: the same, except that a watch in
which no label arrived at all starts the episode (``kind="drift"``): with labels that late, only the
estimate could rule harm out. ``drift``: any alarm starts an episode.

Pure numpy and state, no Ray, storage or clocks: the monitor and ``python -m jobs.replay`` run the
same object.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from foundry.config import AlarmPolicy, DriftAlarmConfig
from foundry.drift import evidence, features

INPUT, ESTIMATED, LABELLED = "input", "estimated", "labelled"
REGRESSION_ERROR_QUANTILE = 0.9


@dataclass
class RowSignals:
    """How live rows become input and estimated signals, fitted on one set of reference rows."""

    task: str
    numeric_names: list[str]
    sorted_numeric: np.ndarray  # (n_ref, n_numeric) sorted columns
    missing_names: list[str]
    category_names: list[list[str]]  # per categorical column, one name per index
    sorted_scores: np.ndarray  # (n_ref, k) sorted prediction columns
    input_bounds: np.ndarray
    estimated_bounds: np.ndarray
    reference_expected_error: float | None

    def names(self) -> list[str]:
        out = [f"{n} up" for n in self.numeric_names] + [f"{n} down" for n in self.numeric_names]
        out += [f"{n} rate" for n in self.missing_names]
        out += [name for names in self.category_names for name in names]
        pred = [f"prediction[{j}]" for j in range(self.sorted_scores.shape[1])]
        pred_names = [f"{n} up" for n in pred] + [f"{n} down" for n in pred]
        if self.task == "regression":
            return out + pred_names
        return out + pred_names + ["expected error"]

    def transform(self, x_num: np.ndarray, x_cat: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """(rows, signals) in [0, 1]: input signals first, then the estimated ones."""
        k = self.sorted_numeric.shape[1]
        u = evidence.mid_pit(self.sorted_numeric, np.asarray(x_num[:, :k], np.float64))
        parts = [u, 1.0 - u, np.asarray(x_num[:, k:], np.float64)]
        for j, names in enumerate(self.category_names):
            parts.append((np.asarray(x_cat[:, j])[:, None] == np.arange(len(names))[None, :]).astype(np.float64))
        pm = features.prediction_matrix(self.task, scores)
        p = evidence.mid_pit(self.sorted_scores, np.asarray(pm, np.float64))
        parts += [p, 1.0 - p]
        if self.task != "regression":
            proba = np.asarray(scores, np.float64).reshape(len(scores), -1)
            parts.append((1.0 - proba.max(axis=1))[:, None])
        return np.concatenate(parts, axis=1)

    @property
    def input_count(self) -> int:
        return len(self.input_bounds)


def _delta(cfg: DriftAlarmConfig, family: str, signals: int) -> float:
    """The chance each of a family's ``signals`` reference bounds may fail: ``1 - reference_confidence``
    split across families like the budget (``weights``), then evenly within the family."""
    w = cfg.weights
    share = {INPUT: w.input, ESTIMATED: w.estimated, LABELLED: w.labelled}[family] / (w.input + w.estimated + w.labelled)
    return max((1.0 - cfg.reference_confidence) * share / max(signals, 1), 1e-12)


def fit_row_signals(cfg: DriftAlarmConfig, pre, x_num: np.ndarray, x_cat: np.ndarray, scores: np.ndarray,
                    expected_error_bound: float | None = None) -> RowSignals:
    """Bounds for every row signal from reference rows (encoded by the version's preprocessor).

    ``expected_error_bound``: keep this bound for the estimated-error signal (a re-base of the input
    signals on a benign shift keeps the version's own harm reference)."""
    n = len(x_num)
    task = pre.task
    k = len(pre.numeric)
    missing_names = [f"{c.name} missing" for c in pre.numeric if c.add_missing_indicator]
    category_names = [[f"{c.name}={i}" for i in range(card)] for c, card in zip(pre.categorical, pre.cardinalities,
                                                                                 strict=True)]
    pm = np.asarray(features.prediction_matrix(task, scores), np.float64)
    n_input = 2 * k + len(missing_names) + sum(len(c) for c in category_names)
    if task == "regression":
        delta, delta_est = _delta(cfg, INPUT, n_input), _delta(cfg, ESTIMATED, 2 * pm.shape[1])
    else:
        delta, delta_est = _delta(cfg, INPUT, n_input + 2 * pm.shape[1]), _delta(cfg, ESTIMATED, 1)
    eps = evidence.pit_margin(n, delta)
    miss = np.asarray(x_num[:, k:], np.float64)
    input_bounds = [0.5 + eps] * (2 * k)
    input_bounds += [evidence.rate_upper(int(miss[:, j].sum()), n, delta) for j in range(miss.shape[1])]
    for j, names in enumerate(category_names):
        counts = np.bincount(np.asarray(x_cat[:, j], np.int64), minlength=len(names))
        input_bounds += [evidence.rate_upper(int(c), n, delta) for c in counts[:len(names)]]
    pred_bounds = [0.5 + eps] * (2 * pm.shape[1])
    expected_error = None
    if task == "regression":
        estimated = [0.5 + evidence.pit_margin(n, delta_est)] * (2 * pm.shape[1])
    else:
        input_bounds += pred_bounds
        proba = np.asarray(scores, np.float64).reshape(n, -1)
        expected = 1.0 - proba.max(axis=1)
        expected_error = float(expected.mean())
        bound = expected_error_bound
        if bound is None:
            bound = evidence.mean_upper(expected, delta_est, value_range=1.0 - 1.0 / proba.shape[1]) + cfg.harm_tolerance
        estimated = [bound]
    return RowSignals(task, [c.name for c in pre.numeric], np.sort(np.asarray(x_num[:, :k], np.float64), axis=0),
                      missing_names, category_names, np.sort(pm, axis=0), np.asarray(input_bounds),
                      np.asarray(estimated), expected_error)


@dataclass
class LabelSignal:
    """The labelled error stream's signal: 0/1 errors (classification) or large-error indicators."""

    task: str
    bound: float
    reference_error: float
    error_threshold: float | None = None  # regression: |error| above this counts

    def transform(self, errors: np.ndarray) -> np.ndarray:
        errors = np.asarray(errors, np.float64)
        if self.task == "regression":
            errors = (np.abs(errors) > self.error_threshold).astype(np.float64)
        return errors[:, None]


def fit_label_signal(cfg: DriftAlarmConfig, task: str, errors: np.ndarray) -> LabelSignal:
    n = len(errors)
    delta = _delta(cfg, LABELLED, 1)
    if task == "regression":
        # The share of live rows beyond the reference's 90% error quantile, bounded by the quantile's own
        # order statistic (exact; DKW's band made the bound 0.28 on a 100-row reference, so a model whose
        # large errors went from 10% to 24% of rows was never flagged).
        q = float(np.quantile(np.abs(errors), REGRESSION_ERROR_QUANTILE))
        rate = float(np.mean(np.abs(errors) > q))
        bound = evidence.exceedance_upper(n, REGRESSION_ERROR_QUANTILE, delta) + cfg.harm_tolerance
        return LabelSignal(task, min(bound, 0.99), rate, q)
    rate = float(np.mean(errors))
    bound = min(evidence.rate_upper(int(np.sum(errors)), n, delta) + cfg.harm_tolerance, 0.99)
    return LabelSignal(task, bound, rate)


@dataclass
class Alarm:
    """What one crossing (or the end of a benign watch) means; ``kind``: harm | drift | input | benign."""

    kind: str
    family: str
    signal: str
    row: int  # the alarm's position in the live rows fed so far (1-based count)
    log_statistic: float
    log_threshold: float
    run_rows: int  # rows (labels, for the labelled family) since the evidence started building
    detail: dict[str, Any] = field(default_factory=dict)
    labels: int = 0  # labels fed so far (1-based count): where a labelled alarm happened on the label stream

    @property
    def starts_episode(self) -> bool:
        return self.kind in ("harm", "drift")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "family": self.family, "signal": self.signal, "row": self.row,
                "log_statistic": round(self.log_statistic, 3), "log_threshold": round(self.log_threshold, 3),
                "run_rows": self.run_rows, "labels": self.labels, **self.detail}


class SequentialAlarm:
    def __init__(self, cfg: DriftAlarmConfig, pre, rows: RowSignals, label: LabelSignal | None):
        self.cfg = cfg
        self.pre = pre
        self.rows_signals = rows
        self.label = label
        self.log_threshold = math.log(cfg.expected_rows_between_false_episodes)
        self.names = rows.names()
        n_in, n_est = rows.input_count, len(rows.estimated_bounds)
        self.family = np.array([INPUT] * n_in + [ESTIMATED] * n_est)
        family_weights = {INPUT: cfg.weights.input, ESTIMATED: cfg.weights.estimated,
                          LABELLED: cfg.weights.labelled if label is not None else 0.0}
        total = sum(family_weights.values())
        share = {f: w / total for f, w in family_weights.items()}
        weights = np.array([share[INPUT] / n_in] * n_in + [share[ESTIMATED] / max(n_est, 1)] * n_est)
        self.bank = evidence.CusumBank(np.concatenate([rows.input_bounds, rows.estimated_bounds]), weights, cfg.bets)
        self.label_bank = evidence.CusumBank(np.array([label.bound]) if label else np.zeros(0),
                                             np.array([share[LABELLED]]) if label else np.zeros(0), cfg.bets)
        self.rows_seen = 0
        self.labels_seen = 0
        self.watch: dict[str, Any] | None = None  # an input alarm waiting for harm evidence
        self.recent: deque = deque()  # the last benign_after_rows rows as (x_num, x_cat, scores) chunks, for a re-base
        self.recent_rows = 0
        self.fired: list[Alarm] = []

    @classmethod
    def fit(cls, cfg: DriftAlarmConfig, predictor, frame) -> SequentialAlarm:
        """Fit on reference rows (a version's reference sample, or a new normal) with the version's predictor."""
        pre = predictor.preprocessor
        preds = predictor.predict(frame)
        scores = preds.proba if preds.proba is not None else preds.values.astype(np.float64)
        rows = fit_row_signals(cfg, pre, preds.encoded["x_num"], preds.encoded["x_cat"], scores)
        label = None
        if pre.label in frame.columns:
            from foundry.drift.detectors import _errors

            actual = frame[pre.label].to_numpy()
            errors = (np.asarray(preds.values, np.float64) - actual.astype(np.float64)
                      if pre.task == "regression" else _errors(pre.task, preds.values, actual))
            label = fit_label_signal(cfg, pre.task, errors)
        return cls(cfg, pre, rows, label)

    # ---- evidence ---------------------------------------------------------------------------------------
    def feed_rows(self, x_num: np.ndarray, x_cat: np.ndarray, scores: np.ndarray) -> list[Alarm]:
        """Advance over live rows; returns the alarms they raised (also kept in ``fired``)."""
        scores = np.asarray(scores, np.float64)
        if scores.ndim == 1:
            scores = scores[:, None]
        g = self.rows_signals.transform(x_num, x_cat, scores)
        if self.watch is not None:  # the input alarm is being judged: no new input evidence until then
            g[:, self.family == INPUT] = self.bank.bounds[self.family == INPUT]
        raised: list[Alarm] = []
        start = 0
        while start < len(g):
            end = len(g)
            if self.watch is not None:  # stop where the watch ends, to judge it there
                end = min(end, start + self.cfg.benign_after_rows - self.watch["rows"])
            crossing = self.bank.feed(g[start:end], self.log_threshold, self.label_bank.log_statistic())
            stop = end if crossing is None else start + crossing.row + 1
            self._remember(x_num[start:stop], x_cat[start:stop], scores[start:stop], g[start:stop])
            self.rows_seen += stop - start
            if crossing is not None:
                was_watching = self.watch is not None
                raised.append(self._crossed(self.family[crossing.signal], self.names[crossing.signal], crossing))
                if self.watch is not None and not was_watching:  # pause the input signals for the rest
                    g[stop:, self.family == INPUT] = self.bank.bounds[self.family == INPUT]
            elif self.watch is not None and self.watch["rows"] >= self.cfg.benign_after_rows:
                raised.append(self._benign())
            start = stop
        self.fired += raised
        return raised

    def feed_labels(self, errors: np.ndarray) -> list[Alarm]:
        """Advance over labelled rows' errors (0/1, or signed errors for regression)."""
        if self.label is None or len(errors) == 0:
            return []
        g = self.label.transform(errors)
        raised: list[Alarm] = []
        start = 0
        while start < len(g):
            crossing = self.label_bank.feed(g[start:], self.log_threshold, self.bank.log_statistic())
            stop = len(g) if crossing is None else start + crossing.row + 1
            self.labels_seen += stop - start
            if crossing is not None:
                raised.append(self._crossed(LABELLED, "labelled error", crossing))
            start = stop
        self.fired += raised
        return raised

    def take(self) -> list[Alarm]:
        out, self.fired = self.fired, []
        return out

    def statistics(self) -> dict[str, float]:
        """log of each family's share of the statistic (the alarm needs their sum to reach log_threshold)."""
        out = {f: self.bank.family_log_statistic(self.family == f) for f in (INPUT, ESTIMATED)}
        out[LABELLED] = self.label_bank.log_statistic()
        return out

    # ---- what a crossing means ----------------------------------------------------------------------------
    def _crossed(self, family: str, signal: str, crossing: evidence.Crossing) -> Alarm:
        detail = {"statistics": {k: round(v, 3) for k, v in self.statistics().items()}}
        if family == INPUT and self.cfg.policy is not AlarmPolicy.drift:
            kind = "input"
            self.bank.reset(self.family == INPUT)
            self.watch = {"row": self.rows_seen, "rows": 0, "signal": signal, "expected_error": 0.0,
                          "labels": self.labels_seen}
        else:
            kind = "harm" if family != INPUT else "drift"
            if self.watch is not None:
                detail["input_alarm"] = {"row": self.watch["row"], "signal": self.watch["signal"]}
            self.watch = None
            self.bank.reset()
            self.label_bank.reset()
        return Alarm(kind, family, signal, self.rows_seen, crossing.log_statistic, self.log_threshold,
                     crossing.run_rows, detail, self.labels_seen)

    def _benign(self) -> Alarm:
        """The watch ended without harm evidence: report it and re-base the input signals on the watched rows
        (with ``harm_or_unlabelled_drift`` and no label in the watch, the drift starts an episode instead)."""
        watch = self.watch
        if self.cfg.policy is AlarmPolicy.harm_or_unlabelled_drift and self.labels_seen == watch["labels"]:
            self.watch = None
            self.bank.reset()
            self.label_bank.reset()
            return Alarm("drift", INPUT, watch["signal"], self.rows_seen, self.bank.log_statistic(),
                         self.log_threshold, watch["rows"],
                         {"input_alarm": {"row": watch["row"], "signal": watch["signal"]},
                          "reason": f"no label arrived in the {watch['rows']} rows watched for harm"},
                         self.labels_seen)
        self.watch = None
        est = self.rows_signals.reference_expected_error
        detail = {"input_alarm": {"row": watch["row"], "signal": watch["signal"]}, "watched_rows": watch["rows"]}
        if est is not None:
            detail["expected_error"] = round(watch["expected_error"] / max(watch["rows"], 1), 4)
            detail["reference_expected_error"] = round(est, 4)
        self.rebase_inputs()
        return Alarm("benign", INPUT, watch["signal"], self.rows_seen, self.bank.log_statistic(), self.log_threshold,
                     watch["rows"], detail)

    def rebase_inputs(self) -> None:
        """Input signals against the recent rows (the estimated and labelled signals keep the version's
        own reference: harm is always measured against what the model achieved when it was trained)."""
        if not self.recent:
            return
        x_num, x_cat, scores = (np.concatenate([c[i] for c in self.recent]) for i in range(3))
        old = self.rows_signals
        new = fit_row_signals(self.cfg, self.pre, x_num, x_cat, scores,
                              expected_error_bound=float(old.estimated_bounds[0]) if old.task != "regression" else None)
        if old.task == "regression":
            new.estimated_bounds = old.estimated_bounds
            new.sorted_scores = old.sorted_scores  # regression's estimated signals are the prediction PITs
        new.reference_expected_error = old.reference_expected_error
        self.rows_signals = new
        self.bank.set_bounds(self.family == INPUT, new.input_bounds)

    def _remember(self, x_num, x_cat, scores, g) -> None:
        if len(x_num) == 0:
            return
        self.recent.append((np.asarray(x_num), np.asarray(x_cat), scores))
        self.recent_rows += len(x_num)
        while self.recent_rows - len(self.recent[0][0]) >= self.cfg.benign_after_rows:
            self.recent_rows -= len(self.recent.popleft()[0])
        if self.watch is not None:
            self.watch["rows"] += len(x_num)
            if self.rows_signals.task != "regression":
                self.watch["expected_error"] += float(g[:, -1].sum())


__all__ = ["ESTIMATED", "INPUT", "LABELLED", "Alarm", "SequentialAlarm", "fit_label_signal", "fit_row_signals"]
