"""Per-column work on Arrow blocks, with the same results as the pandas expressions it replaces.

Why Arrow and not pandas: turning a block into a DataFrame makes a Python object of every string
cell, and pandas' default row hash then factorizes each string column (a hash table of Python
objects) before hashing it: on the 2,000,000-row churn set the id column alone took 2 s to hash
this way and 0.2 s hashed directly. So the pipeline's block functions (foundry/data/blocks.py) read
Arrow columns: strings are dictionary-encoded in C++ (a category column is then a few distinct values
and an index array) or, when nearly every value is distinct, hashed without factorizing; numbers go
to numpy without copies. Every helper here equals, bit for bit, the pandas code that the rest of
Foundry (serving, the drift monitors, existing splits) uses; tests/unit/test_block_columns.py checks
each against it, so splits and fingerprints do not move.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.core.util.hashing import hash_array

from foundry.data.values import category_strings

U8MAX = np.uint64(2**64 - 1)  # pandas' hash of a null in an object or categorical column
DISTINCT_SAMPLE = 4096  # strings looked at to choose between hashing each cell and hashing a dictionary


def _one_array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _dictionary_hash(enc: pa.DictionaryArray) -> np.ndarray:
    """pandas' hash of a categorical: the categories' hashes taken by code, nulls as U8MAX."""
    hashed = hash_array(enc.dictionary.to_numpy(zero_copy_only=False), categorize=False)
    codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    out = np.append(hashed, U8MAX)[codes]  # code -1 picks the appended U8MAX
    return out


def _string_hash(arr: pa.Array) -> np.ndarray:
    if len(arr) == 0:
        return np.zeros(0, np.uint64)
    sample = arr.slice(0, DISTINCT_SAMPLE)
    if 2 * len(sample.unique()) > len(sample):  # mostly distinct (an id): hash each cell, no factorizing
        values = arr.to_numpy(zero_copy_only=False)
        if arr.null_count:
            nulls = arr.is_null().to_numpy(zero_copy_only=False)
            values = values.copy()
            values[nulls] = ""
            out = hash_array(values, categorize=False)
            out[nulls] = U8MAX
            return out
        return hash_array(values, categorize=False)
    return _dictionary_hash(arr.dictionary_encode())


def column_hash(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``pd.util.hash_pandas_object(series, index=False)`` of the column as Arrow converts it to pandas."""
    arr = _one_array(col)
    t = arr.type
    if is_string(t):
        return _string_hash(arr)
    if pa.types.is_dictionary(t) and is_string(t.value_type) and arr.dictionary.null_count == 0:
        return _dictionary_hash(arr)
    return pd.util.hash_pandas_object(arr.to_pandas(), index=False).to_numpy(np.uint64)


def combine_hashes(hashes: list[np.ndarray]) -> np.ndarray:
    """pandas' ``combine_hash_arrays``: the row hash of a DataFrame from its columns' hashes, in order."""
    out = np.zeros_like(hashes[0]) + np.uint64(0x345678)
    mult = np.uint64(1000003)
    with np.errstate(over="ignore"):
        for i, h in enumerate(hashes):
            inverse_i = len(hashes) - i
            out ^= h
            out *= mult
            mult += np.uint64(82520 + inverse_i + inverse_i)
        out += np.uint64(97531)
    return out


@dataclass
class NumericColumn:
    """A numeric feature as the profile and the encoder see it: float64 with NaN for null or unparseable."""

    values: np.ndarray
    nulls: np.ndarray
    not_numeric: np.ndarray | None  # None: a numeric Arrow type, nothing can fail to parse
    examples: list[str]  # a few unparseable cells, as text


def numeric_column(col: pa.Array | pa.ChunkedArray, max_examples: int) -> NumericColumn:
    """``pd.to_numeric(series, errors="coerce")`` as float64, the nulls ``series.isna()`` and the cells that
    are there but are no number. Integer and float columns go straight to numpy; anything else (text
    from a CSV, decimals) through pandas, exactly as before."""
    arr = _one_array(col)
    t = arr.type
    if pa.types.is_null(t):
        values = np.full(len(arr), np.nan)
        return NumericColumn(values, np.ones(len(arr), dtype=bool), None, [])
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        values = arr.to_numpy(zero_copy_only=False).astype("float64", copy=False)
        return NumericColumn(values, np.isnan(values), None, [])
    series = arr.to_pandas()
    nulls = series.isna().to_numpy(dtype=bool)
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    not_numeric = np.isnan(values) & ~nulls
    return NumericColumn(values, nulls, not_numeric, [str(v) for v in series[not_numeric].head(max_examples)])


@dataclass
class CategoryColumn:
    """A categorical column as codes into this block's own category strings (-1: null)."""

    codes: np.ndarray  # int64
    categories: list[str]

    def as_arrow(self) -> pa.DictionaryArray:
        """The column kept for encoding: Arrow holds the codes and the block's strings, not a string per row."""
        indices = pa.array(self.codes.astype(np.int32), mask=self.codes < 0)
        return pa.DictionaryArray.from_arrays(indices, pa.array(self.categories, pa.string()))

    def counts(self, rows: np.ndarray | None = None) -> dict[str, int]:
        """Rows per category (nulls left out), over ``rows`` (a boolean mask) or all rows."""
        codes = self.codes if rows is None else self.codes[rows]
        found = np.bincount(codes[codes >= 0], minlength=len(self.categories))
        return {self.categories[i]: int(n) for i, n in enumerate(found) if n}

    def lookup(self, categories: list[str], offset: int = 1, missing: int = 0) -> np.ndarray:
        """For codes ``c`` (``-1`` too): ``lookup[c]`` is the category's position in ``categories``
        plus ``offset``, or ``missing`` for a null or a category not in the list."""
        where = {c: i + offset for i, c in enumerate(categories)}
        return np.array([where.get(c, missing) for c in self.categories] + [missing], dtype=np.int64)


def _factorized(strings: pd.Series, codes: np.ndarray) -> CategoryColumn:
    """Codes through a (small) table of category strings that may hold nulls or repeat a string."""
    sub, uniques = pd.factorize(strings, use_na_sentinel=True)
    sub = np.append(sub.astype(np.int64), -1)  # code -1 stays -1
    return CategoryColumn(sub[codes], [str(u) for u in uniques])


def category_column(col: pa.Array | pa.ChunkedArray) -> CategoryColumn:
    """``category_strings(series)`` (foundry/data/values.py) as codes: one dictionary encoding in C++
    instead of a Python string per row. Non-string columns (integer-coded categories, floats, bools)
    convert only their distinct values through ``category_strings``: it decides on the values present
    (integral floats read '3', not '3.0'), and a fresh dictionary holds exactly those."""
    arr = _one_array(col)
    t = arr.type
    if pa.types.is_dictionary(t):
        if not is_string(t.value_type) or arr.dictionary.null_count:
            return category_column(arr.cast(t.value_type))
        enc = arr
    elif is_string(t):
        enc = arr.dictionary_encode()
    else:
        try:
            enc = arr.dictionary_encode()
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # a type Arrow cannot dictionary-encode
            strings = category_strings(arr.to_pandas())
            return _factorized(strings, np.arange(len(strings), dtype=np.int64))
        codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        return _factorized(category_strings(enc.dictionary.to_pandas()), codes)
    codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    strings = enc.dictionary.to_pylist()
    if len(set(strings)) != len(strings):
        return _factorized(pd.Series(strings, dtype="string"), codes)
    return CategoryColumn(codes, strings)


def staged_categories(col: pa.Array | pa.ChunkedArray) -> CategoryColumn:
    """A column written by ``CategoryColumn.as_arrow`` read back (one chunk or several)."""
    if isinstance(col, pa.ChunkedArray) and col.num_chunks == 1:
        col = col.chunk(0)
    if isinstance(col, pa.ChunkedArray):
        col = col.unify_dictionaries().combine_chunks() if col.num_chunks else pa.array([], pa.string())
        if not pa.types.is_dictionary(col.type):
            return category_column(col)
    codes = col.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return CategoryColumn(codes, col.dictionary.to_pylist())
