"""The fitted feature transform, shared by training, batch evaluation and Serve.

One implementation for every path is what prevents training/serving skew: the registry stores the
fitted state as JSON (no pickle, so loading a model version can never execute code), and every
consumer rebuilds the same ``Preprocessor`` from it.

Encoding:
- numerics: standardized with the training mean/std; nulls become the mean (0 after scaling), and a
  nullable feature gets a 0/1 "was missing" column so the model can tell imputed from real values;
- categoricals: index 1..K over the categories seen in training, 0 for null or anything unseen,
  so a new category at serving time is a valid input that maps to a learned "unknown" embedding.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from foundry.config import DataConfig, FeatureType, Task
from foundry.data.values import category_strings

UNKNOWN_INDEX = 0


@dataclass
class NumericEncoding:
    name: str
    mean: float
    std: float
    add_missing_indicator: bool


@dataclass
class CategoricalEncoding:
    name: str
    categories: list[str]

    @property
    def cardinality(self) -> int:
        """Embedding rows needed: the known categories plus the shared unknown/null row."""
        return len(self.categories) + 1


@dataclass
class Preprocessor:
    task: str
    label: str
    classes: list[str] | None
    numeric: list[NumericEncoding] = field(default_factory=list)
    categorical: list[CategoricalEncoding] = field(default_factory=list)
    label_mean: float = 0.0
    label_std: float = 1.0

    # ----- shape of the encoded features (what the model is built for)
    @property
    def numeric_width(self) -> int:
        return len(self.numeric) + sum(n.add_missing_indicator for n in self.numeric)

    @property
    def cardinalities(self) -> list[int]:
        return [c.cardinality for c in self.categorical]

    @property
    def feature_names(self) -> list[str]:
        return [n.name for n in self.numeric] + [c.name for c in self.categorical]

    @property
    def output_width(self) -> int:
        if self.task == Task.multiclass.value:
            return len(self.classes)
        return 1

    # ----- transform
    def transform(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """Encode features; ``x_num`` is float32 (rows, numeric_width), ``x_cat`` int64 (rows, n_categorical)."""
        n = len(df)
        cols = []
        indicators = []
        for enc in self.numeric:
            raw = pd.to_numeric(df[enc.name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            missing = ~np.isfinite(raw)
            cols.append(np.where(missing, 0.0, (raw - enc.mean) / enc.std))
            if enc.add_missing_indicator:
                indicators.append(missing.astype("float64"))
        x_num = np.stack(cols + indicators, axis=1).astype("float32") if cols else np.zeros((n, 0), "float32")
        x_cat = np.zeros((n, len(self.categorical)), dtype="int64")
        for j, enc in enumerate(self.categorical):
            codes = pd.Categorical(category_strings(df[enc.name]), categories=enc.categories).codes
            x_cat[:, j] = codes.astype("int64") + 1  # -1 (null or unseen) -> UNKNOWN_INDEX
        return {"x_num": x_num, "x_cat": x_cat}

    def encode_label(self, values: pd.Series) -> np.ndarray:
        if self.task == Task.regression.value:
            y = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
            return ((y - self.label_mean) / self.label_std).astype("float32")
        codes = pd.Categorical(category_strings(values), categories=self.classes).codes
        if (codes < 0).any():
            bad = values[codes < 0].head(3).tolist()
            raise ValueError(f"label {self.label!r} has values outside the classes {self.classes}: {bad}")
        return codes.astype("float32" if self.task == Task.binary.value else "int64")

    def decode_regression(self, y: np.ndarray) -> np.ndarray:
        return y * self.label_std + self.label_mean

    def transform_with_label(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        out = self.transform(df)
        out["y"] = self.encode_label(df[self.label])
        return out

    # ----- persistence (JSON only: loading never runs code)
    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocessor:
        raw = json.loads(text)
        raw["numeric"] = [NumericEncoding(**n) for n in raw["numeric"]]
        raw["categorical"] = [CategoricalEncoding(**c) for c in raw["categorical"]]
        return cls(**raw)


# ----- fitting: per-batch partial statistics, merged on the driver
def partial_stats(df: pd.DataFrame, data: DataConfig) -> dict:
    """Sufficient statistics of one batch of training rows (sums and counts, mergeable by adding)."""
    out: dict = {"numeric": {}, "categorical": {}, "label": None}
    for f in data.features:
        col = df[f.name]
        if f.type is FeatureType.numeric:
            v = pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            v = v[np.isfinite(v)]
            out["numeric"][f.name] = [int(v.size), float(v.sum()), float(np.square(v).sum())]
        else:
            counts = category_strings(col.dropna()).value_counts()
            out["categorical"][f.name] = {str(k): int(c) for k, c in counts.items()}
    if data.task is Task.regression:
        y = pd.to_numeric(df[data.label], errors="coerce").to_numpy(dtype="float64")
        y = y[np.isfinite(y)]
        out["label"] = [int(y.size), float(y.sum()), float(np.square(y).sum())]
    return out


def _mean_std(count: int, total: float, sumsq: float) -> tuple[float, float]:
    if count == 0:
        return 0.0, 1.0
    mean = total / count
    var = max(sumsq / count - mean * mean, 0.0)
    std = math.sqrt(var)
    return mean, (std if std > 1e-12 else 1.0)


def fit(partials: list[dict], data: DataConfig) -> Preprocessor:
    """Build the preprocessor from the training split's merged partial statistics."""
    num_totals: dict[str, np.ndarray] = {}
    cat_counts: dict[str, Counter] = {}
    label_total = np.zeros(3)
    for p in partials:
        for name, triple in p["numeric"].items():
            num_totals[name] = num_totals.get(name, np.zeros(3)) + np.asarray(triple, dtype="float64")
        for name, counts in p["categorical"].items():
            cat_counts.setdefault(name, Counter()).update(counts)
        if p["label"] is not None:
            label_total += np.asarray(p["label"], dtype="float64")
    numeric, categorical = [], []
    for f in data.features:
        if f.type is FeatureType.numeric:
            count, total, sumsq = num_totals.get(f.name, np.zeros(3))
            mean, std = _mean_std(int(count), float(total), float(sumsq))
            numeric.append(NumericEncoding(f.name, mean, std, add_missing_indicator=f.nullable))
        else:
            categorical.append(CategoricalEncoding(f.name, sorted(cat_counts.get(f.name, {}))))
    label_mean, label_std = 0.0, 1.0
    if data.task is Task.regression:
        label_mean, label_std = _mean_std(int(label_total[0]), float(label_total[1]), float(label_total[2]))
    return Preprocessor(
        task=data.task.value,
        label=data.label,
        classes=list(data.classes) if data.classes is not None else None,
        numeric=numeric,
        categorical=categorical,
        label_mean=label_mean,
        label_std=label_std,
    )
