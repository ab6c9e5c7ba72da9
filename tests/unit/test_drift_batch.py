"""``LiveBatch``: the typed batch the monitor takes from Serve, checked once at the actor boundary."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from foundry.drift.batch import InvalidBatch, LiveBatch
from foundry.serving.inference import live_columns


def served(n: int = 4, proba: bool = True) -> dict:
    """A batch exactly as ``live_columns`` builds it on a Serve replica."""
    frame = pd.DataFrame({"age": [30 + i for i in range(n)], "plan": [f"p{i % 2}" for i in range(n)]})
    values = np.asarray([str(i % 2) for i in range(n)]) if proba else np.arange(n, dtype=np.float64)
    result = SimpleNamespace(values=values,
                             proba=np.stack([np.full(n, 0.25), np.full(n, 0.75)], axis=1) if proba else None,
                             encoded={"x_num": np.arange(n, dtype=np.float32).reshape(n, 1),
                                      "x_cat": np.ones((n, 1), np.int64)})
    return live_columns(frame, result, [f"r{i}" for i in range(n)], "v1")


def test_what_serve_sends_is_normalised():
    batch = LiveBatch.from_dict(served())
    assert len(batch) == 4 and batch.request_ids.tolist() == ["r0", "r1", "r2", "r3"]
    assert all(type(r) is str for r in batch.request_ids) and all(type(v) is str for v in batch.model_version)
    assert batch.x_num.dtype == np.float32 and batch.x_cat.dtype == np.int64
    assert batch.scores.shape == (4, 2) and batch.scores.dtype == np.float32
    assert batch.received_at.dtype == np.float64 and set(batch.raw) == {"age", "plan"}
    assert LiveBatch.from_dict(batch) is batch  # a LiveBatch passes through

    regression = LiveBatch.from_dict(served(proba=False))  # one output: one score column
    assert regression.scores.shape == (4, 1)
    empty = LiveBatch.from_dict({k: (v[:0] if isinstance(v, np.ndarray) else {c: a[:0] for c, a in v.items()})
                                 for k, v in served().items()})
    assert len(empty) == 0 and empty.scores.shape == (0, 2)


def test_select_and_the_stored_frame_keep_rows_whole():
    batch = LiveBatch.from_dict(served())
    part = batch.select(np.array([False, True, False, True]))
    assert part.request_ids.tolist() == ["r1", "r3"] and part.x_num[:, 0].tolist() == [1.0, 3.0]
    assert part.raw["plan"].tolist() == ["p1", "p1"]

    frame = batch.frame([("age", True), ("plan", False), ("missing", True)], regression=False)
    assert frame.columns.tolist() == ["request_id", "received_at", "model_version", "prediction", "age", "plan",
                                      "missing"]
    assert frame["prediction"].tolist() == ["0", "1", "0", "1"] and frame["age"].dtype == np.float64
    assert frame["missing"].isna().all() and str(frame["received_at"].dt.tz) == "UTC"
    values = LiveBatch.from_dict(served(proba=False)).frame([], regression=True)["prediction"]
    assert values.dtype == np.float64


@pytest.mark.parametrize("change, problem", [
    (lambda b: b.pop("scores"), "columns ['scores']"),
    (lambda b: b.update(model_version=b["model_version"][:3]), "model_version"),
    (lambda b: b.update(x_num=b["x_num"][:, 0]), "x_num"),
    (lambda b: b.update(x_cat=b["x_cat"][:2]), "x_cat"),
    (lambda b: b.update(scores=b["scores"][:3]), "wrong type or shape"),
    (lambda b: b["raw"].update(age=b["raw"]["age"][:1]), "raw['age']"),
    (lambda b: b.update(received_at=["yesterday"] * 4), "wrong type or shape"),
])
def test_a_malformed_batch_is_refused_naming_the_problem(change, problem):
    batch = served()
    change(batch)
    with pytest.raises(InvalidBatch, match=problem.replace("[", r"\[").replace("]", r"\]")):
        LiveBatch.from_dict(batch)
    with pytest.raises(InvalidBatch, match="mapping"):
        LiveBatch.from_dict([1, 2, 3])
