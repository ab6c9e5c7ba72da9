"""``pipeline.prepare``'s plan, run on a fake in-memory Dataset (no Ray): the source is read once, every
step gets whole pyarrow blocks (no pandas conversion), and the results do not depend on block order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from foundry import config
from foundry.data import blocks as block_fns
from foundry.data import pipeline, sources
from foundry.datasets import generate


class FakeDataset:
    """Records every ``map_batches`` and read; runs the plan in memory when materialized or taken."""

    def __init__(self, log: list, blocks: list[pa.Table] | None = None, parent=None, fn=None, kwargs=None,
                 name: str = "source"):
        self.log, self.blocks, self.parent, self.fn, self.kwargs, self.name = log, blocks, parent, fn, kwargs, name

    def schema(self, fetch_if_missing: bool = False):
        return self.blocks[0].schema

    def map_batches(self, fn, *, fn_kwargs=None, batch_format="default", batch_size="default",
                    zero_copy_batch=False):
        self.log.append(("map_batches", self.name, fn.__name__, batch_format, batch_size))
        return FakeDataset(self.log, parent=self, fn=fn, kwargs=fn_kwargs or {}, name=fn.__name__)

    def tables(self) -> list[pa.Table]:
        if self.fn is None:
            if self.name == "source":
                self.log.append(("read",))
            return list(self.blocks)
        return [self.fn(t, **self.kwargs) for t in self.parent.tables()]

    def materialize(self):
        self.log.append(("materialize", self.name))
        return FakeDataset(self.log, blocks=self.tables(), name=f"materialized {self.name}")

    def to_arrow_refs(self):
        return self.tables()

    def take_all(self):
        return [row for t in self.tables() for row in t.to_pylist()]


ROWS = 4000


@pytest.fixture(scope="module")
def frame():
    return generate("churn", "baseline", ROWS, 11)


def _prepare(monkeypatch, tmp_path, frame, cuts, materialize=True, reverse=False):
    """``prepare`` over the frame cut into blocks at ``cuts``, in reverse order if asked; (prepared, log)."""
    log: list = []
    parts = np.split(np.arange(len(frame)), cuts)
    blocks = [pa.Table.from_pandas(frame.iloc[p], preserve_index=False) for p in parts]
    blocks = blocks[::-1] if reverse else blocks
    files = sources.SourceFiles(None, ["/data/x.parquet"], ["/data/x.parquet"])
    monkeypatch.setattr(pipeline, "read_source", lambda source: (FakeDataset(log, blocks), files))
    monkeypatch.setattr(pipeline, "_staged_tables", lambda staged: staged.to_arrow_refs())

    def encode(staged, fitted):  # pipeline._encode_materialized without Ray: the same block function
        log.append(("encode", staged.name))
        return {which: FakeDataset(log, [block_fns.encode_arrow_block(t, which, fitted) for t in staged.to_arrow_refs()],
                                   name=f"encoded {which}") for which in pipeline.ENCODED}

    monkeypatch.setattr(pipeline, "_encode_materialized", encode)
    # pipeline._stage_materialized without Ray: Ray Data's plan (a Parquet source is staged by plain tasks
    # of the same block function on a real cluster: tests/integration/test_data_pipeline.py)
    monkeypatch.setattr(pipeline, "_stage_materialized",
                        lambda ds, data, files: pipeline._pyarrow_blocks(ds, block_fns.stage_block, data=data).materialize())
    data = config.load([f"storage.root={tmp_path}", "data.source.synthetic=null", "data.source.path=/data/x.parquet",
                        "data.reference_rows=200", f"data.materialize={str(materialize).lower()}"]).data
    return pipeline.prepare(data), log


def test_the_source_is_read_once_in_whole_pyarrow_blocks(monkeypatch, tmp_path, frame):
    prepared, log = _prepare(monkeypatch, tmp_path, frame, [1000, 2500])
    assert log.count(("read",)) == 1  # profile, reference draw and both encodings: one read
    maps = [entry for entry in log if entry[0] == "map_batches"]
    assert {(fmt, size) for *_, fmt, size in maps} == {("pyarrow", None)}  # no pandas batches, no re-batching
    on_source = [fn for _, on, fn, *_ in maps if on == "source"]
    assert on_source == ["stage_block", "split_rows_of"]  # staged once; the test split stays lazy
    assert ("materialize", "stage_block") in log
    assert ("encode", "materialized stage_block") in log  # both splits from the staged blocks
    assert prepared.train.name == "encoded train" and prepared.val.name == "encoded val"
    assert len(prepared.reference) == 200
    assert sum(t.num_rows for t in prepared.train.tables()) == prepared.split_rows["train"]


def test_without_materialize_nothing_but_the_profile_is_computed(monkeypatch, tmp_path, frame):
    prepared, log = _prepare(monkeypatch, tmp_path, frame, [2000], materialize=False)
    assert log.count(("read",)) == 1 and not [e for e in log if e[0] in ("materialize", "encode")]
    assert sum(t.num_rows for t in prepared.val.tables()) == prepared.split_rows["val"]  # re-read per epoch


def test_block_order_and_sizes_do_not_change_the_result(monkeypatch, tmp_path, frame):
    a, _ = _prepare(monkeypatch, tmp_path, frame, [500, 1700, 3900])
    b, _ = _prepare(monkeypatch, tmp_path, frame, [100, 3000], reverse=True)
    assert a.fingerprint == b.fingerprint and a.split_rows == b.split_rows
    assert a.reference.equals(b.reference)
    for which in ("train", "val"):
        sums = [[np.concatenate([t[k].chunk(0).to_numpy() for t in getattr(p, which).tables()]).sum(axis=0)
                 for k in ("x_num", "x_cat", "y")] for p in (a, b)]
        for x, y in zip(*sums, strict=True):
            assert np.allclose(x, y, atol=1e-3)  # standardized columns sum to ~0; float32 rounding
