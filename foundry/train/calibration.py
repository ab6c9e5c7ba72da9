"""Temperature scaling: probabilities that mean what they say, fitted on the validation split.

Why: the drift monitor estimates the served model's accuracy on live traffic before any label
arrives (confidence-based performance estimation, ``foundry.drift.alarm``): the mean of
``1 - max_k p_k`` is the expected error rate only if the probabilities are calibrated. A network
trained with early stopping on its loss is close, but not exactly; one temperature ``T`` (logits
divided by ``T``) fitted by maximum likelihood on held-out rows (Guo et al., 2017) removes most of
the gap without changing any prediction (the argmax is the same). The promotion gate's log loss
benefits from it too.

Stored with the version as ``calibration.json`` (plain JSON); ``Predictor`` applies it. A version
without the file (older ones, regression) is used as it is (``T = 1``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy import optimize

from foundry.config import Task
from foundry.models.tasks import probabilities

CALIBRATION_FILE = "calibration.json"
MAX_ROWS = 50_000


def _nll(task: Task, logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    proba = probabilities(task, logits / temperature)
    picked = proba[np.arange(len(y)), y.astype(np.int64)]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def fit_temperature(task: Task, logits: np.ndarray, y: np.ndarray) -> dict:
    """The temperature in [0.05, 20] that minimises the log loss of ``logits`` (rows, outputs) on class
    indices ``y``, with the losses before and after."""
    result = optimize.minimize_scalar(lambda log_t: _nll(task, logits, y, math.exp(log_t)),
                                      bounds=(math.log(0.05), math.log(20.0)), method="bounded",
                                      options={"xatol": 1e-4})
    t = float(math.exp(result.x))
    return {"temperature": round(t, 6), "rows": int(len(y)), "log_loss_before": round(_nll(task, logits, y, 1.0), 6),
            "log_loss_after": round(_nll(task, logits, y, t), 6)}


def calibrate(staging: Path, val_dataset, say, kept_from: tuple[str, float] | None = None) -> dict | None:
    """Fit the staged version's temperature on the validation split (encoded rows) and store it.

    ``kept_from`` (version, temperature): training kept a warm start's weights, so the version *is* that
    one and keeps its calibration too; refitting would let a recalibration alone pass for a better model."""
    from foundry.models.predictor import Predictor

    predictor = Predictor.from_dir(staging)
    if predictor.task is Task.regression:
        return None
    if kept_from is not None:
        kept = {"temperature": kept_from[1], "fitted_on": f"kept from {kept_from[0]} (its weights were kept)"}
        (staging / CALIBRATION_FILE).write_text(json.dumps(kept, indent=2))
        return kept
    logits, labels, rows = [], [], 0
    for batch in val_dataset.iter_batches(batch_size=8192, batch_format="numpy"):
        logits.append(predictor.logits(batch.get("x_num"), batch.get("x_cat")))
        labels.append(np.asarray(batch["y"]).reshape(-1))
        rows += len(labels[-1])
        if rows >= MAX_ROWS:
            break
    if not rows:
        return None
    fitted = fit_temperature(predictor.task, np.concatenate(logits), np.concatenate(labels))
    fitted["fitted_on"] = "validation split"
    (staging / CALIBRATION_FILE).write_text(json.dumps(fitted, indent=2))
    say(f"      calibrated probabilities: temperature {fitted['temperature']:.3f} on {fitted['rows']} validation rows "
        f"(log loss {fitted['log_loss_before']:.4f} -> {fitted['log_loss_after']:.4f})")
    return fitted


def read_temperature(version_dir: Path) -> float:
    path = Path(version_dir) / CALIBRATION_FILE
    if not path.exists():
        return 1.0
    t = float(json.loads(path.read_text())["temperature"])
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"{path}: temperature must be a positive number, got {t}")
    return t


__all__ = ["CALIBRATION_FILE", "calibrate", "fit_temperature", "read_temperature"]
