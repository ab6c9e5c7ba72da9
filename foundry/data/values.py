"""Value coercions shared by validation and the preprocessor, so both read a cell the same way."""

from __future__ import annotations

import numpy as np
import pandas as pd


def category_strings(values: pd.Series) -> pd.Series:
    """Categoricals compare as strings, so 1 and '1' are one category in CSV and Parquet alike.

    A pandas categorical (a Parquet dictionary column) is converted through its categories, which
    can be integers or floats themselves: an integer-coded region 3 must read '3' however it is stored.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        names = category_strings(pd.Series(values.cat.categories)).to_numpy(dtype=object)
        codes = values.cat.codes.to_numpy()
        out = np.where(codes >= 0, names[np.maximum(codes, 0)] if len(names) else None, None)
        return pd.Series(out, index=values.index, dtype="string")
    if pd.api.types.is_float_dtype(values.dtype):
        present = values.dropna()
        # Integers stored as floats (a CSV column with nulls) must not become '1.0'.
        if (present == np.floor(present)).all():
            return values.astype("Int64").astype("string")
    return values.astype("string")
