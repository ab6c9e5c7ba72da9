"""Batched inference over validated requests: one DataFrame, one preprocessor pass, one forward.

The fixed cost of a prediction (building the frame, the preprocessor's pandas work, the torch
call) is paid once per batch instead of once per request, which is what ``@serve.batch`` buys.
The caller hands in the ``LoadedModel`` it took once for the whole batch, so every row of every
response in the batch names that one version, however a swap interleaves.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from foundry.serving.holder import LoadedModel

logger = logging.getLogger(__name__)


def to_frame(requests: Sequence[Sequence[Mapping[str, Any]]], features: Sequence[str],
             clip_bounds: Mapping[str, tuple[float | None, float | None]] | None = None) -> pd.DataFrame:
    """Column-wise (no per-row dicts in pandas): an omitted nullable feature becomes None."""
    columns = {name: [row.get(name) for rows in requests for row in rows] for name in features}
    frame = pd.DataFrame(columns)
    for name, (lo, hi) in (clip_bounds or {}).items():
        frame[name] = pd.to_numeric(frame[name], errors="coerce").clip(lower=lo, upper=hi)
    return frame


def predict_batch(loaded: LoadedModel, requests: Sequence[Sequence[Mapping[str, Any]]], features: Sequence[str],
                  clip_bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
                  observe: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """One response body (``PredictResponse`` as a dict) per request, in order.

    ``observe`` (the drift monitor's sink) receives the batch's columns: request ids, raw features,
    the preprocessed inputs and the outputs. It must not block (``MonitorSink.offer`` only buffers).
    """
    frame = to_frame(requests, features, clip_bounds)
    result = loaded.predictor.predict(frame)
    values = result.values.tolist()
    proba = result.proba
    classes = loaded.predictor.preprocessor.classes
    version = loaded.version
    out = []
    start = 0
    for rows in requests:
        stop = start + len(rows)
        preds = []
        for i in range(start, stop):
            item: dict[str, Any] = {"request_id": uuid.uuid4().hex, "prediction": _plain(values[i]),
                                    "model_version": version}
            if proba is not None:
                item["probabilities"] = dict(zip(classes, proba[i].tolist(), strict=True))
            preds.append(item)
        out.append({"model": loaded.model, "model_version": version, "predictions": preds})
        start = stop
    if observe is not None:
        try:
            observe(live_columns(frame, result, [p["request_id"] for r in out for p in r["predictions"]], version))
        except Exception as exc:  # monitoring must never fail a prediction
            logger.warning("drift monitor sink: %s: %s", type(exc).__name__, exc)
    return out


def live_columns(frame: pd.DataFrame, result: Any, request_ids: list[str], version: str) -> dict[str, Any]:
    """What the drift monitor receives for one batch (numpy columns: cheap to pickle)."""
    n = len(frame)
    scores = result.proba if result.proba is not None else np.asarray(result.values, dtype=np.float64)
    return {"request_id": np.asarray(request_ids, dtype=object),
            "received_at": np.full(n, time.time()),
            "model_version": np.full(n, version, dtype=object),
            "prediction": np.asarray(result.values),
            "scores": np.asarray(scores, dtype=np.float32),
            "x_num": result.encoded["x_num"], "x_cat": result.encoded["x_cat"],
            "raw": {name: frame[name].to_numpy(dtype=object) for name in frame.columns}}


def _plain(value: Any) -> Any:
    """Class labels are strings; regression values numpy floats, which JSON cannot take as they are."""
    if isinstance(value, np.generic):
        return value.item()
    return value
