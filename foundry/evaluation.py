"""Test-set evaluation of one model version, streamed batch by batch through its ``Predictor``.

Scoring runs where the caller runs (the job driver), reading the test split as a stream of
batches: it needs no shared local disk between nodes and never holds more than the labels and
predictions of the test split.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from foundry.config import Task
from foundry.predictor import Predictor
from foundry.tasks import evaluate


def evaluate_predictor(predictor: Predictor, batches: Iterable[pd.DataFrame]) -> dict[str, float]:
    fitted = predictor.preprocessor
    y_true, y_pred, proba = [], [], []
    for df in batches:
        if not len(df):
            continue
        pred = predictor.predict(df)
        if predictor.task is Task.regression:
            y_true.append(pd.to_numeric(df[fitted.label], errors="coerce").to_numpy("float64"))
            y_pred.append(pred.values.astype("float64"))
        else:
            y_true.append(fitted.encode_label(df[fitted.label]).astype("int64"))
            y_pred.append(pred.index)
            proba.append(pred.proba)
    if not y_true:
        raise ValueError("the test split is empty: nothing to evaluate")
    return evaluate(predictor.task, np.concatenate(y_true), np.concatenate(proba) if proba else None,
                    np.concatenate(y_pred))


def evaluate_dataset(predictor: Predictor, dataset, batch_rows: int = 4096) -> dict[str, float]:
    """Evaluate on a Ray Dataset of raw rows (e.g. ``PreparedData.test_raw``)."""
    return evaluate_predictor(predictor, dataset.iter_batches(batch_size=batch_rows, batch_format="pandas"))
