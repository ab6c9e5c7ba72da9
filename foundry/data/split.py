"""Deterministic train/validation/test split that needs no shuffle and no global order.

Each row's split comes from a seeded hash of its key column(s) (or of the whole row when no key is
configured), so the same row lands in the same split on every run, on any number of workers, in
any block order, whatever the key's type (integer, string, categorical, composite). A second,
independent draw per row picks the reference sample for drift detection from the held-out splits
(``REFERENCE_SPLITS``).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from foundry.config import DataConfig

SPLITS = ("train", "val", "test")
# The drift reference sample comes from rows the model never trained on: its error rate and output
# distribution there are what fresh in-distribution traffic shows. On training rows both are
# optimistic (fitted), and the concept detector flagged clean traffic at ~2.5x its p-value.
REFERENCE_SPLITS = ("val", "test")
_SCALE = float(2**64)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(h: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a bijection on uint64 whose every output bit depends on every input bit."""
    with np.errstate(over="ignore"):
        z = h + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _salt(salt: str, seed: int) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(f"{salt}:{seed}".encode(), digest_size=8).digest(), "little"))


def row_hashes(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """pandas' unsalted row hash of ``columns`` (any dtype: integers, strings, categoricals, several
    columns at once), as uint64."""
    return pd.util.hash_pandas_object(df[columns], index=False).to_numpy(dtype=np.uint64)


def _uniform(hashed: np.ndarray, salt: str, seed: int) -> np.ndarray:
    """One number in [0, 1) per row, a pure function of the row's hash, the salt and the seed.

    The seed is mixed in *after* hashing: pandas' ``hash_key`` salts only string columns, so an integer
    key (the most common id) used to ignore the seed, and the reference draw was then the split draw
    itself (an empty reference sample once the held-out pool was large)."""
    return _mix64(hashed ^ _salt(salt, seed)) / _SCALE


def key_columns(data: DataConfig) -> list[str]:
    """The split key: one column, several (a composite key), or the whole row when none is set."""
    key = data.split.key
    if key is None:
        return [f.name for f in data.features] + [data.label]
    return [key] if isinstance(key, str) else list(key)


def assign(df: pd.DataFrame, data: DataConfig) -> np.ndarray:
    """The split name of every row: rows with the same key always land in the same split."""
    u = _uniform(row_hashes(df, key_columns(data)), "split", data.split.seed)
    bounds = np.array([data.split.train, data.split.train + data.split.val])
    return np.asarray(SPLITS, dtype=object)[np.searchsorted(bounds, u, side="right")]


def reference_draw(df: pd.DataFrame, data: DataConfig) -> np.ndarray:
    """Independent uniform per row used to draw the drift reference sample (from ``REFERENCE_SPLITS``).

    Unlike the split, the draw must be independent for every *row*, not every key: rows that share a
    key (exact duplicates when there is no key, or several rows of one customer) would otherwise be
    drawn all together or not at all, a cluster sample whose proportions wander far from the
    population's (a category at 29.3% against 33.1%: a false alarm after 1,720 clean rows). So the
    row's hash is combined with its occurrence number among equal rows of the batch and with the
    batch's own fingerprint (order-independent): the same file and block layout gives the same
    sample, and every row is its own draw."""
    hashed = row_hashes(df, list(df.columns.intersection(_content_columns(data), sort=False)))
    occurrence = pd.Series(hashed).groupby(hashed).cumcount().to_numpy(dtype=np.uint64)
    with np.errstate(over="ignore"):
        batch = hashed.sum(dtype=np.uint64)
        combined = _mix64(hashed ^ _mix64(occurrence * _GOLDEN + batch))
    return _uniform(combined, "reference", data.split.seed)


def _content_columns(data: DataConfig) -> list[str]:
    return list(dict.fromkeys(key_columns(data) + [f.name for f in data.features] + [data.label]))


def in_reference_pool(splits: np.ndarray) -> np.ndarray:
    """Which rows (given their split names) the reference sample may be drawn from."""
    return np.isin(splits, REFERENCE_SPLITS)
