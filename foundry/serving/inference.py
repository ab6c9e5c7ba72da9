"""Batched inference over validated requests: one DataFrame, one preprocessor pass, one forward.

The fixed cost of a prediction (building the frame, the preprocessor's pandas work, the torch
call) is paid once per batch instead of once per request, which is what ``@serve.batch`` buys.
The caller hands in the ``LoadedModel`` it took once for the whole batch, so every row of every
response in the batch names that one version, however a swap interleaves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from foundry.rollout import routing
from foundry.serving.holder import LoadedModel, Serving

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
                  observe: Callable[[dict[str, Any]], None] | None = None,
                  request_ids: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
    """One response body (``PredictResponse`` as a dict) per request, in order, all from ``loaded``."""
    return answer_batch(Serving(loaded), requests, features, clip_bounds, observe, request_ids=request_ids)


def answer_batch(serving: Serving, requests: Sequence[Sequence[Mapping[str, Any]]], features: Sequence[str],
                 clip_bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
                 observe: Callable[[dict[str, Any]], None] | None = None,
                 answers: Callable[[dict[str, Any]], None] | None = None,
                 background: Callable[[LoadedModel, pd.DataFrame, list[str]], bool] | None = None,
                 request_ids: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
    """One response body per request, in order; each request answered wholly by one version.

    Outside a roll-out the champion answers everything. During one (``serving.challenger``), each
    request goes to the version ``routing`` picks (canary: by the hash of its id; shadow: always the
    champion); the other version predicts the same rows in ``background`` (off the request path), and
    both versions' answers go to ``answers`` (the drift monitor's sink) for the live paired tests. A
    challenger that raises never fails a request: the champion answers it and the failure is counted.

    ``observe`` (the drift monitor's sink) receives each answered group's columns: request ids, raw
    features, the preprocessed inputs and the outputs. Neither callback may block.
    """
    rids = [routing.normalize_request_id(r) for r in (request_ids or [None] * len(requests))]
    frame = to_frame(requests, features, clip_bounds)
    starts = np.cumsum([0] + [len(rows) for rows in requests])
    champion, challenger = serving.champion, serving.challenger
    arms = [challenger is not None and serving.mode == "canary"
            and routing.to_challenger(rid, challenger.version, serving.fraction) for rid in rids]
    out: list[dict[str, Any] | None] = [None] * len(requests)
    for arm in sorted(set(arms)):
        members = [i for i, a in enumerate(arms) if a == arm]
        sub = frame if len(members) == len(requests) else frame.iloc[
            np.concatenate([np.arange(starts[i], starts[i + 1]) for i in members])].reset_index(drop=True)
        ids = [rid for i in members for rid in routing.row_ids(rids[i], len(requests[i]))]
        model, other = (challenger, champion) if arm else (champion, challenger)
        started = time.perf_counter()
        try:
            result = model.predictor.predict(sub)
        except Exception as exc:
            if model is champion:
                raise
            logger.warning("challenger %s failed; the champion answers: %s: %s", model.version, type(exc).__name__, exc)
            _report(answers, failed_columns(ids, model.version, len(champion.predictor.preprocessor.classes or [1])))
            model, other = champion, None
            started = time.perf_counter()
            result = model.predictor.predict(sub)
        seconds = time.perf_counter() - started
        values = result.values.tolist()  # Python objects once per batch, not per row
        proba = result.proba.tolist() if result.proba is not None else None
        offset = 0
        for i in members:
            n = len(requests[i])
            out[i] = _response(model, values, proba, offset, ids[offset:offset + n], rids[i])
            offset += n
        _report(observe, live_columns(sub, result, ids, model.version), what="drift monitor sink")
        if challenger is None:
            continue
        _report(answers, answer_columns(ids, model.version, result, served=True, seconds=seconds))
        if other is not None and background is not None:
            background(other, sub, ids)
    return out  # type: ignore[return-value]


def _response(loaded: LoadedModel, values: list, proba: list | None, start: int, ids: list[str],
              request_id: str) -> dict[str, Any]:
    classes = loaded.predictor.preprocessor.classes
    preds = []
    for k, rid in enumerate(ids):
        item: dict[str, Any] = {"request_id": rid, "prediction": _plain(values[start + k]),
                                "model_version": loaded.version}
        if proba is not None:
            item["probabilities"] = dict(zip(classes, proba[start + k], strict=True))
        preds.append(item)
    return {"model": loaded.model, "model_version": loaded.version, "request_id": request_id, "predictions": preds}


def _report(callback: Callable[[dict[str, Any]], None] | None, columns: dict[str, Any],
            what: str = "roll-out answers") -> None:
    if callback is None:
        return
    try:
        callback(columns)
    except Exception as exc:  # monitoring must never fail a prediction
        logger.warning("%s: %s: %s", what, type(exc).__name__, exc)


def second_opinion(model: LoadedModel, frame: pd.DataFrame, ids: list[str],
                   answers: Callable[[dict[str, Any]], None]) -> None:
    """The version that did not answer predicts the same rows (``service.Background``'s thread, which
    hands it the rows of many requests at once: one preprocessor pass and one forward for all of them)."""
    started = time.perf_counter()
    try:
        result = model.predictor.predict(frame)
    except Exception as exc:
        logger.warning("second opinion by %s failed: %s: %s", model.version, type(exc).__name__, exc)
        _report(answers, failed_columns(ids, model.version, len(model.predictor.preprocessor.classes or [1])))
        return
    _report(answers, answer_columns(ids, model.version, result, served=False, seconds=time.perf_counter() - started))


def answer_columns(ids: list[str], version: str, result: Any, served: bool, seconds: float) -> dict[str, Any]:
    """One version's answers to one batch, for the roll-out's judge (``foundry.rollout.judge``)."""
    n = len(ids)
    scores = result.proba if result.proba is not None else np.asarray(result.values, dtype=np.float64)
    first = np.zeros(n, dtype=bool)
    first[:1] = True
    return {"request_id": np.asarray(ids, dtype=object), "model_version": np.full(n, version, dtype=object),
            "scores": np.asarray(scores, dtype=np.float32).reshape(n, -1), "served": np.full(n, served),
            "seconds": np.full(n, seconds), "failed": np.zeros(n, dtype=bool), "batch_start": first}


def failed_columns(ids: list[str], version: str, width: int) -> dict[str, Any]:
    n = len(ids)
    first = np.zeros(n, dtype=bool)
    first[:1] = True
    return {"request_id": np.asarray(ids, dtype=object), "model_version": np.full(n, version, dtype=object),
            "scores": np.full((n, width), np.nan, dtype=np.float32), "served": np.zeros(n, dtype=bool),
            "seconds": np.zeros(n), "failed": np.ones(n, dtype=bool), "batch_start": first}


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
