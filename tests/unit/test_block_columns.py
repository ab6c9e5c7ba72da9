"""The pipeline's Arrow block functions (foundry/data/columns.py, blocks.py) against the pandas code they
replace, and the pipeline's plan (one read, pyarrow batches, block order free) on a fake Dataset: no Ray."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from foundry import config
from foundry.config import Task
from foundry.data import blocks, columns, schema, split
from foundry.data import preprocessor as prep
from foundry.data.values import category_strings
from foundry.datasets import generate

ROWS = 6000


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return config.load([f"storage.root={tmp_path_factory.mktemp('root')}", "data.reference_rows=300"]).data


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = generate("churn", "baseline", ROWS, 5)
    df.loc[df.index[::97], "region"] = None  # nulls in a string column
    df.loc[df.index[::89], "plan"] = "legacy"  # a category the config does not list
    return df


def _table(df: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(df, preserve_index=False)


def _stage(df: pd.DataFrame, data, chunks: int, seed: int = 0) -> list[pa.Table]:
    """Stage ``df`` as ``chunks`` blocks of uneven size, in a shuffled block order."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(df)), chunks - 1, replace=False)) if chunks > 1 else []
    parts = np.split(np.arange(len(df)), cuts)
    rng.shuffle(parts)
    return [blocks.stage_block(_table(df.iloc[p]), data) for p in parts]


def _merged(staged: list[pa.Table]) -> dict:
    return blocks.merge_profiles([p for s in staged for p in blocks.block_profiles(s)])


# ---- columns: the same numbers as pandas --------------------------------------------------------------

@pytest.mark.parametrize("values", [
    pd.Series([f"C{i:07d}" for i in range(5000)] + [None]),  # mostly distinct strings, a null
    pd.Series(["a", "b", None, "a"] * 2000),  # few distinct strings
    pd.Series(np.arange(-50, 50, dtype="int64")),
    pd.Series([1.5, np.nan, -0.0, 2.0] * 10),
    pd.Series([1, None, 3], dtype="Int64"),
    pd.Series([True, False, True]),
    pd.Series(pd.Categorical(["x", "y", None, "x"])),
], ids=["ids", "categories", "int", "float", "nullable-int", "bool", "pandas-categorical"])
def test_column_hash_is_pandas_row_hash(values):
    arrow = pa.chunked_array([pa.array(values, from_pandas=True)])
    expected = pd.util.hash_pandas_object(arrow.to_pandas(), index=False).to_numpy(np.uint64)
    assert np.array_equal(columns.column_hash(arrow), expected)


def test_combined_hash_is_pandas_frame_hash(frame):
    table = _table(frame)
    names = ["customer_id", "age", "plan", "satisfaction", "churned"]
    got = columns.combine_hashes([columns.column_hash(table[c]) for c in names])
    assert np.array_equal(got, pd.util.hash_pandas_object(frame[names], index=False).to_numpy(np.uint64))


@pytest.mark.parametrize("values", [
    pd.Series(["b", None, "a", "b"]),
    pd.Series([3, 1, 3, 2]),
    pd.Series([3.0, np.nan, 1.0]),  # integral floats read '3', not '3.0'
    pd.Series([1.5, 2.0, None]),
    pd.Series(pd.Categorical(["x", None, "x"], categories=["x", "unused"])),
], ids=["strings", "ints", "integral-floats", "floats", "dictionary"])
def test_category_codes_follow_category_strings(values):
    cat = columns.category_column(pa.array(values, from_pandas=True))
    decoded = [None if c < 0 else cat.categories[c] for c in cat.codes]
    expected = category_strings(values)
    assert decoded == [None if pd.isna(v) else v for v in expected]


def test_text_in_a_numeric_column_is_counted_with_examples():
    num = columns.numeric_column(pa.array(["1", "x", None, "2.5"]), max_examples=5)
    assert np.isnan(num.values[1]) and num.values[3] == 2.5
    assert num.nulls.tolist() == [False, False, True, False] and num.not_numeric.tolist() == [False, True, False, False]
    assert num.examples == ["x"]


# ---- blocks: one pass, any block order, the same result as one frame ---------------------------------

def test_staged_profile_equals_the_pandas_profile(frame, data):
    merged = _merged(_stage(frame, data, chunks=1))
    assert merged["schema"] == schema.profile_batch(frame, data)
    splits = split.assign(frame, data)
    assert merged["split_rows"] == {s: int((splits == s).sum()) for s in split.SPLITS}
    content = pd.util.hash_pandas_object(frame[split.content_columns(data)], index=False).to_numpy(np.uint64)
    assert merged["fingerprint"] == f"{int(content.sum(dtype=np.uint64)):016x}"
    fitted = prep.fit(merged["stats"], data)
    expected = prep.fit([prep.partial_stats(frame[splits == "train"], data)], data)
    assert [c.categories for c in fitted.categorical] == [c.categories for c in expected.categorical]
    assert np.allclose([(n.mean, n.std) for n in fitted.numeric], [(n.mean, n.std) for n in expected.numeric])


@pytest.mark.parametrize("chunks", [2, 7, 25])
def test_any_block_order_and_size_gives_the_same_profile_and_reference(frame, data, chunks):
    one, many = _merged(_stage(frame, data, 1)), _merged(_stage(frame, data, chunks, seed=chunks))
    assert many["fingerprint"] == one["fingerprint"] and many["split_rows"] == one["split_rows"]
    assert many["schema"]["rows"] == ROWS
    assert blocks.reference_sample(many["reference"], data).equals(blocks.reference_sample(one["reference"], data))


def test_the_fused_reference_is_the_k_lowest_draws_of_the_held_out_rows(frame, data):
    """Each block keeps only its own k lowest draws; merged, they are exactly the global k lowest."""
    pool = np.flatnonzero(split.in_reference_pool(split.assign(frame, data)))
    lowest = pool[np.argsort(split.reference_draw(frame, data)[pool], kind="stable")[:data.reference_rows]]
    names = [f.name for f in data.features] + [data.label]
    expected = frame.iloc[lowest][names].reset_index(drop=True)
    staged = _stage(frame, data, chunks=9, seed=1)
    assert all(len(blocks.block_profiles(s)[0]["reference"]) <= data.reference_rows for s in staged)
    assert blocks.reference_sample(_merged(staged)["reference"], data).equals(expected)


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_encoded_blocks_equal_the_preprocessor_transform(frame, data, task):
    if task == "regression":
        data = dataclasses.replace(data, task=Task.regression, label="monthly_charges", classes=None,
                                   features=[f for f in data.features if f.name != "monthly_charges"])
    staged = _stage(frame, data, chunks=1)
    fitted = prep.fit(_merged(staged)["stats"], data)
    splits = split.assign(frame, data)
    for which in ("train", "val"):
        got = blocks.encode_block(staged[0], which, fitted)
        expected = fitted.transform_with_label(frame[splits == which])
        assert sorted(got) == sorted(k for k, v in expected.items() if v.ndim == 1 or v.shape[1] > 0)
        for key in got:
            assert got[key].dtype == expected[key].dtype and np.array_equal(got[key], expected[key]), key
        # In shuffled blocks of any size: the same rows (order-free sums), the same dtypes.
        parts = [blocks.encode_block(s, which, fitted) for s in _stage(frame, data, chunks=5, seed=3)]
        for key in got:
            assert np.allclose(np.concatenate([p[key] for p in parts]).sum(axis=0, dtype="float64"),
                               got[key].sum(axis=0, dtype="float64"))


def test_an_encoded_arrow_block_is_the_block_ray_would_make(frame, data):
    from ray.data.block import BlockAccessor

    staged = _stage(frame, data, chunks=1)[0]
    fitted = prep.fit(_merged([staged])["stats"], data)
    ours = blocks.encode_arrow_block(staged, "val", fitted)
    assert ours.equals(BlockAccessor.batch_to_block(blocks.encode_block(staged, "val", fitted)))
