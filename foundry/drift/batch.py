"""``LiveBatch``: what a Serve replica hands the drift monitor for one batch of answered requests.

Why a type: the monitor used to read a loose dict (``foundry.serving.inference.live_columns``) key by
key in three places, so a missing or misshapen column surfaced as a ``KeyError`` or a broadcasting
error somewhere inside a test round. ``LiveBatch.from_dict`` checks the whole batch once, at the
actor boundary, and normalises dtypes (the detectors want float32/int64 matrices, epoch seconds as
float64, ids and versions as Python strings); everything after it can rely on the shape.

Why the wire still carries the dict: the Serve-side sink (``foundry.drift.sink``) buffers, samples
and concatenates batches column by column, and a dict of numpy arrays pickles cheaply and never ties
a replica and a monitor running different code versions (a rolling upgrade) to one class definition.
``DriftMonitor.ingest`` converts it immediately (it also accepts a ``LiveBatch``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

REQUIRED = ("request_id", "received_at", "model_version", "prediction", "scores", "x_num", "x_cat")


class InvalidBatch(ValueError):
    """A batch that is not what ``foundry.serving.inference.live_columns`` builds."""


def _strings(values: Any) -> np.ndarray:
    """An object array of Python ``str`` (what a pandas column of strings holds)."""
    return np.asarray(values, dtype=object).astype(str).astype(object)


def _matrix(values: np.ndarray, n: int) -> np.ndarray:
    """(rows, outputs): a single output's 1-D scores become one column (an empty batch too)."""
    if values.size == 0:
        return values.reshape(n, values.shape[1] if values.ndim == 2 else 1)
    return values.reshape(n, -1)


@dataclass(frozen=True)
class LiveBatch:
    """One batch of live rows, row-aligned: every array has one entry (or matrix row) per request."""

    request_ids: np.ndarray  # object array of str
    predictions: np.ndarray  # the model's answers as served (labels, or values for regression)
    model_version: np.ndarray  # object array of str: the version that answered each row
    x_num: np.ndarray  # float32 (rows, numeric width): the preprocessed inputs the detectors test
    x_cat: np.ndarray  # int64 (rows, categorical inputs)
    scores: np.ndarray  # float32 (rows, outputs): probabilities, or the predicted value
    received_at: np.ndarray  # float64 epoch seconds (when the replica answered)
    raw: dict[str, np.ndarray] = field(default_factory=dict)  # feature -> raw values as the request sent them

    def __len__(self) -> int:
        return len(self.request_ids)

    @classmethod
    def from_dict(cls, batch: Mapping[str, Any]) -> LiveBatch:
        """Check and normalise what Serve hands over; raises ``InvalidBatch`` naming the first problem."""
        if isinstance(batch, LiveBatch):
            return batch
        if not isinstance(batch, Mapping):
            raise InvalidBatch(f"a live batch is a mapping of columns, not {type(batch).__name__}")
        missing = [k for k in REQUIRED if k not in batch]
        if missing:
            raise InvalidBatch(f"a live batch needs the columns {missing}")
        try:
            ids = _strings(batch["request_id"])
            n = len(ids)
            out = cls(
                request_ids=ids,
                predictions=np.asarray(batch["prediction"]),
                model_version=_strings(batch["model_version"]),
                x_num=np.asarray(batch["x_num"], dtype=np.float32),
                x_cat=np.asarray(batch["x_cat"], dtype=np.int64),
                scores=_matrix(np.asarray(batch["scores"]), n).astype(np.float32),
                received_at=np.asarray(batch["received_at"], dtype=np.float64),
                raw={str(k): np.asarray(v, dtype=object) for k, v in (batch.get("raw") or {}).items()})
        except (TypeError, ValueError) as exc:
            raise InvalidBatch(f"a live batch column has the wrong type or shape: {exc}") from exc
        out._check()
        return out

    def _check(self) -> None:
        n = len(self.request_ids)
        for name in ("predictions", "model_version", "received_at"):
            if getattr(self, name).shape != (n,):
                raise InvalidBatch(f"{name}: shape {getattr(self, name).shape}, expected ({n},)")
        for name in ("x_num", "x_cat", "scores"):
            value = getattr(self, name)
            if value.ndim != 2 or len(value) != n:
                raise InvalidBatch(f"{name}: shape {value.shape}, expected ({n}, columns)")
        for name, values in self.raw.items():
            if values.shape != (n,):
                raise InvalidBatch(f"raw[{name!r}]: shape {values.shape}, expected ({n},)")

    def select(self, mask: np.ndarray) -> LiveBatch:
        """The rows where ``mask`` is true."""
        return LiveBatch(self.request_ids[mask], self.predictions[mask], self.model_version[mask],
                         self.x_num[mask], self.x_cat[mask], self.scores[mask], self.received_at[mask],
                         {k: v[mask] for k, v in self.raw.items()})

    def frame(self, features: Iterable[tuple[str, bool]], regression: bool) -> pd.DataFrame:
        """The rows as ``LiveStore`` keeps them: ids, time, version, the prediction (a string, or a float
        for regression) and every raw feature (``features``: (name, numeric?)), coerced to its type."""
        n = len(self)
        out: dict[str, Any] = {"request_id": self.request_ids,
                               "received_at": pd.to_datetime(self.received_at, unit="s", utc=True),
                               "model_version": self.model_version,
                               "prediction": self.predictions.astype(np.float64) if regression
                               else self.predictions.astype(str)}
        for name, numeric in features:
            values = pd.Series(self.raw.get(name, [None] * n), dtype=object)
            if numeric:
                out[name] = pd.to_numeric(values, errors="coerce").astype("float64")
            else:
                out[name] = values.where(values.notna(), None).map(lambda v: None if v is None else str(v))
        return pd.DataFrame(out)


__all__ = ["InvalidBatch", "LiveBatch", "REQUIRED"]
