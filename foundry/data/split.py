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
    return np.asarray(SPLITS, dtype=object)[split_codes(row_hashes(df, key_columns(data)), data)]


def split_codes(key_hashes: np.ndarray, data: DataConfig) -> np.ndarray:
    """The split of every row as an index into ``SPLITS`` (uint8), from the rows' key hashes: the form the
    block functions keep (one byte a row), and what ``assign`` names."""
    u = _uniform(key_hashes, "split", data.split.seed)
    bounds = np.array([data.split.train, data.split.train + data.split.val])
    return np.searchsorted(bounds, u, side="right").astype(np.uint8)


POOL_CODES = np.array([SPLITS.index(s) for s in REFERENCE_SPLITS], dtype=np.uint8)


def reference_draw(df: pd.DataFrame, data: DataConfig) -> np.ndarray:
    """Independent uniform per row used to draw the drift reference sample (from ``REFERENCE_SPLITS``):
    ``draws`` of the rows' content hashes (key, features and label, as in the fingerprint)."""
    return draws(row_hashes(df, content_columns(data)), data.split.seed)


def occurrence(hashed: np.ndarray) -> np.ndarray:
    """For each row, how many rows before it have the same hash (0 for the first), as uint64."""
    out = np.zeros(len(hashed), dtype=np.uint64)
    if len(hashed) < 2:
        return out
    order = np.argsort(hashed, kind="stable")
    ordered = hashed[order]
    index = np.arange(len(hashed))
    starts = np.maximum.accumulate(np.where(np.r_[True, ordered[1:] != ordered[:-1]], index, 0))
    out[order] = (index - starts).astype(np.uint64)
    return out


def draws(content_hashes: np.ndarray, seed: int) -> np.ndarray:
    """The reference draw of rows given their content hashes: a pure function of the row's content and
    its occurrence number among equal rows of the same block.

    Unlike the split, the draw must be independent for every *row*, not every key: rows that share a
    key (several rows of one customer) would otherwise be drawn all together or not at all, a cluster
    sample whose proportions wander far from the population's (a category at 29.3% against 33.1%: a
    false alarm after 1,720 clean rows). Hashing the whole content separates rows of one key; the
    occurrence number separates exact copies within a block. A row's draw does not depend on which
    other rows share its block, so the sample is the same for any block order and any block sizes
    (what lets the pipeline keep only each block's k lowest draws, and pandas on one frame agree
    with it). The one exception: exact copies of a row that land in different blocks share a draw."""
    with np.errstate(over="ignore"):
        combined = _mix64(content_hashes ^ _mix64(occurrence(content_hashes) * _GOLDEN))
    return _uniform(combined, "reference", seed)


def content_columns(data: DataConfig) -> list[str]:
    """What a row *is*: the key, the features and the label (the fingerprint and the draw hash these)."""
    return list(dict.fromkeys(key_columns(data) + [f.name for f in data.features] + [data.label]))


def in_reference_pool(splits: np.ndarray) -> np.ndarray:
    """Which rows (given their split names) the reference sample may be drawn from."""
    return np.isin(splits, REFERENCE_SPLITS)
