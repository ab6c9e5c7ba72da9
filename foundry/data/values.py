"""Value coercions shared by validation and the preprocessor, so both read a cell the same way."""

from __future__ import annotations

import numpy as np
import pandas as pd


def category_strings(values: pd.Series) -> pd.Series:
    """Categoricals compare as strings, so 1 and '1' are one category in CSV and Parquet alike."""
    if pd.api.types.is_float_dtype(values.dtype):
        present = values.dropna()
        # Integers stored as floats (a CSV column with nulls) must not become '1.0'.
        if (present == np.floor(present)).all():
            return values.astype("Int64").astype("string")
    return values.astype("string")
