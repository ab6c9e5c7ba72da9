"""What differs between binary classification, multi-class classification and regression.

Loss, how raw network outputs become predictions, which metrics are reported, and which one heads
a report. Whether a new model beats the current one is the promotion gate's call (foundry/train/gate.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from foundry.config import Task

# Early stopping follows the validation loss and promotion the gate's per-row loss; this one heads reports.
PRIMARY_METRIC = {Task.binary: "roc_auc", Task.multiclass: "macro_f1", Task.regression: "rmse"}
HIGHER_IS_BETTER = {"roc_auc": True, "macro_f1": True, "accuracy": True, "rmse": False, "mae": False, "r2": True}


def loss_fn(task: Task) -> nn.Module:
    return {Task.binary: nn.BCEWithLogitsLoss(), Task.multiclass: nn.CrossEntropyLoss(),
            Task.regression: nn.MSELoss()}[task]


def loss_target(task: Task, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shape the network output and label for the task's loss."""
    if task is Task.multiclass:
        return logits, y.long()
    return logits.squeeze(-1), y.float()


def probabilities(task: Task, outputs: np.ndarray) -> np.ndarray | None:
    """Class probabilities (rows, classes) from raw outputs, or None for regression."""
    if task is Task.binary:
        p1 = 1.0 / (1.0 + np.exp(-outputs.reshape(-1)))
        return np.stack([1.0 - p1, p1], axis=1)
    if task is Task.multiclass:
        z = outputs - outputs.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    return None


def evaluate(task: Task, y_true: np.ndarray, proba: np.ndarray | None, y_pred: np.ndarray) -> dict[str, float]:
    """Test-set metrics. For classification ``y_true``/``y_pred`` are class indices; for regression, values."""
    from sklearn import metrics as skm

    if task is Task.regression:
        err = y_pred - y_true
        return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))),
                "r2": float(skm.r2_score(y_true, y_pred)), "rows": int(len(y_true))}
    out = {"accuracy": float(skm.accuracy_score(y_true, y_pred)),
           "macro_f1": float(skm.f1_score(y_true, y_pred, average="macro")),
           "log_loss": float(skm.log_loss(y_true, proba, labels=list(range(proba.shape[1])))),
           "rows": int(len(y_true))}
    if task is Task.binary:
        out["f1"] = float(skm.f1_score(y_true, y_pred))
        out["roc_auc"] = float(skm.roc_auc_score(y_true, proba[:, 1])) if len(set(y_true)) > 1 else float("nan")
    return out
