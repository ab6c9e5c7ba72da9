"""Deterministic train/validation/test split that needs no shuffle and no global order.

Each row's split comes from a seeded hash of its key column (or of the whole row when no key is
configured), so the same row lands in the same split on every run, on any number of workers, in
any block order. A second, independent hash draws the reference sample for drift detection from the
held-out splits (``REFERENCE_SPLITS``).
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


def _uniform(df: pd.DataFrame, columns: list[str], salt: str, seed: int) -> np.ndarray:
    """One number in [0, 1) per row, a pure function of the row's key and the seed."""
    hashed = pd.util.hash_pandas_object(df[columns], index=False, hash_key=_hash_key(salt, seed))
    return hashed.to_numpy(dtype=np.uint64) / _SCALE


def _hash_key(salt: str, seed: int) -> str:
    """The 16-character key of pandas' row hash. Short keys are zero-padded (as they always were); a
    longer one is digested, not truncated: truncation made seeds of 16+ digits collide with each
    other and made the reference draw identical to the split draw."""
    text = f"{salt}{seed}"
    if len(text) <= 16:
        return text.rjust(16, "0")
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def key_columns(data: DataConfig) -> list[str]:
    return [data.split.key] if data.split.key else [f.name for f in data.features] + [data.label]


def assign(df: pd.DataFrame, data: DataConfig) -> np.ndarray:
    """The split name of every row."""
    u = _uniform(df, key_columns(data), "split", data.split.seed)
    bounds = np.array([data.split.train, data.split.train + data.split.val])
    return np.asarray(SPLITS, dtype=object)[np.searchsorted(bounds, u, side="right")]


def reference_draw(df: pd.DataFrame, data: DataConfig) -> np.ndarray:
    """Independent uniform per row used to draw the drift reference sample (from ``REFERENCE_SPLITS``)."""
    return _uniform(df, key_columns(data), "reference", data.split.seed)


def in_reference_pool(splits: np.ndarray) -> np.ndarray:
    """Which rows (given their split names) the reference sample may be drawn from."""
    return np.isin(splits, REFERENCE_SPLITS)
