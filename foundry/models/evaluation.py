"""Test-set evaluation of one model version, streamed batch by batch through its ``Predictor``.

Scoring runs where the caller runs (the job driver), reading the test split as a stream of
batches: it needs no shared local disk between nodes and never holds more than the labels and
predictions of the test split.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from foundry.config import Task
from foundry.models.predictor import Predictor
from foundry.models.tasks import evaluate
from foundry.train.gate import RowScores, row_scores


@dataclass(frozen=True)
class Scored:
    """One model's answers on a test set: its metrics and its per-row scores (what the gate pairs)."""

    metrics: dict[str, float]
    rows: RowScores


class _Collector:
    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.y_true, self.y_pred, self.proba = [], [], []

    def add(self, df: pd.DataFrame) -> None:
        fitted, pred = self.predictor.preprocessor, self.predictor.predict(df)
        if self.predictor.task is Task.regression:
            self.y_true.append(pd.to_numeric(df[fitted.label], errors="coerce").to_numpy("float64"))
            self.y_pred.append(pred.values.astype("float64"))
        else:
            self.y_true.append(fitted.encode_label(df[fitted.label]).astype("int64"))
            self.y_pred.append(pred.index)
            self.proba.append(pred.proba)

    def scored(self) -> Scored:
        if not self.y_true:
            raise ValueError("the test split is empty: nothing to evaluate")
        y, yp = np.concatenate(self.y_true), np.concatenate(self.y_pred)
        p = np.concatenate(self.proba) if self.proba else None
        task = self.predictor.task
        return Scored(evaluate(task, y, p, yp), row_scores(task, y, p, yp))


def score_predictors(predictors: list[Predictor], batches: Iterable[pd.DataFrame]) -> list[Scored | Exception]:
    """Score several models in one pass over the same batches (the gate pairs their rows). A model that
    cannot score this data (another schema) gets its exception in its place; the others are unaffected."""
    collectors: list[_Collector | Exception] = [_Collector(p) for p in predictors]
    for df in batches:
        if not len(df):
            continue
        for i, c in enumerate(collectors):
            if isinstance(c, _Collector):
                try:
                    c.add(df)
                except Exception as exc:
                    collectors[i] = exc
    out: list[Scored | Exception] = []
    for c in collectors:
        try:
            out.append(c.scored() if isinstance(c, _Collector) else c)
        except Exception as exc:
            out.append(exc)
    return out


def evaluate_predictor(predictor: Predictor, batches: Iterable[pd.DataFrame]) -> dict[str, float]:
    result = score_predictors([predictor], batches)[0]
    if isinstance(result, Exception):
        raise result
    return result.metrics


def evaluate_dataset(predictor: Predictor, dataset, batch_rows: int = 4096) -> dict[str, float]:
    """Evaluate on a Ray Dataset of raw rows (e.g. ``PreparedData.test_raw``)."""
    return evaluate_predictor(predictor, dataset.iter_batches(batch_size=batch_rows, batch_format="pandas"))
