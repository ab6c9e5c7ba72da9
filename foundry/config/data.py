"""The ``data`` section (``conf/data/``): the data set's schema, where it is read from, how it is split
and what validation accepts."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from foundry.config.common import MISSING, bounded, check_bounds, require


class Task(str, Enum):
    binary = "binary"
    multiclass = "multiclass"
    regression = "regression"


class FeatureType(str, Enum):
    numeric = "numeric"
    categorical = "categorical"


class SourceFormat(str, Enum):
    parquet = "parquet"
    csv = "csv"


class UnknownCategoryPolicy(str, Enum):
    """What validation does with a categorical value outside the schema's ``values``."""

    error = "error"  # reject the data set
    allow = "allow"  # keep it; the preprocessor maps it to the shared 'unknown' embedding


@dataclass
class FeatureSpec:
    name: str = MISSING
    type: FeatureType = MISSING
    min: float | None = None
    max: float | None = None
    values: list[str] | None = None
    nullable: bool = False
    on_unknown: UnknownCategoryPolicy = UnknownCategoryPolicy.error

    def validate(self, i: int) -> None:
        key = f"data.features[{i}] ({self.name})"
        if self.type is FeatureType.numeric:
            require(self.values is None, key, "a numeric feature takes min/max, not values")
            if self.min is not None and self.max is not None:
                require(self.min <= self.max, key, f"min {self.min} is greater than max {self.max}")
        else:
            require(self.min is None and self.max is None, key, "a categorical feature takes values, not min/max")
            require(self.values is None or len(self.values) > 0, key, "values, when given, must not be empty")


@dataclass
class SyntheticSourceConfig:
    """Generate the bundled data set at ``source.path`` when the file is not there yet."""

    generator: str = "churn"
    scenario: str = "baseline"
    rows: int = bounded(60_000, ge=1)
    seed: int = 0


@dataclass
class SourceConfig:
    # A file, a folder (every data file below it), a glob, or a list of those (foundry/data/sources.py).
    # Typed Any: OmegaConf has no str | list[str]; validate() checks the shape.
    path: Any = MISSING
    format: SourceFormat = SourceFormat.parquet
    delimiter: str = ","  # CSV only
    null_values: list[str] = field(default_factory=lambda: ["", "NA", "N/A", "null", "NULL", "NaN"])  # CSV only
    synthetic: SyntheticSourceConfig | None = None

    def validate(self) -> None:
        path_ok = (isinstance(self.path, str) and self.path.strip()) or (
            isinstance(self.path, (list, tuple)) and self.path and all(isinstance(p, str) and p.strip() for p in self.path))
        require(bool(path_ok), "data.source.path",
                f"a file, a folder, a glob, or a non-empty list of them; got {self.path!r}")
        require(len(self.delimiter) == 1, "data.source.delimiter",
                f"must be exactly one character, got {self.delimiter!r} (a tab: \"\\t\" in YAML, double-quoted)")
        if self.synthetic is not None:
            check_bounds(self.synthetic, "data.source.synthetic")


@dataclass
class SplitConfig:
    train: float = bounded(0.8, gt=0, lt=1)
    val: float = bounded(0.1, gt=0, lt=1)
    test: float = bounded(0.1, gt=0, lt=1)
    seed: int = 0
    # The column (or list of columns, a composite key) whose rows always share a split; null: the whole row.
    key: Any = None

    def validate(self) -> None:
        check_bounds(self, "data.split")
        key_ok = self.key is None or (isinstance(self.key, str) and self.key) or (
            isinstance(self.key, (list, tuple)) and self.key and all(isinstance(k, str) and k for k in self.key))
        require(bool(key_ok), "data.split.key", f"a column name, a list of column names, or null; got {self.key!r}")
        require(abs(self.train + self.val + self.test - 1.0) < 1e-6, "data.split",
                f"train + val + test must be 1.0, got {self.train + self.val + self.test:.4f}")


@dataclass
class ValidationConfig:
    min_rows: int = bounded(100, ge=1)
    max_null_fraction: float = bounded(0.05, ge=0, le=1)

    def validate(self) -> None:
        check_bounds(self, "data.validation")


@dataclass
class DataConfig:
    name: str = MISSING
    task: Task = MISSING
    label: str = MISSING
    classes: list[str] | None = None
    features: list[FeatureSpec] = MISSING
    source: SourceConfig = field(default_factory=SourceConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    reference_rows: int = bounded(5_000, ge=100)
    materialize: bool = True
    execution_retries: int = bounded(2, ge=0)  # a Ray Data step that lost a node or actor runs again (foundry/runtime/node_loss.py)

    def validate(self) -> None:
        check_bounds(self, "data")
        require(bool(self.features), "data.features", "at least one feature is required")
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        require(not dupes, "data.features", f"duplicate feature names {dupes}")
        require(self.label not in names, "data.label", f"label {self.label!r} is also listed as a feature")
        for i, f in enumerate(self.features):
            f.validate(i)
        if self.task is Task.regression:
            require(self.classes is None, "data.classes", "a regression task has no classes")
        else:
            require(self.classes is not None and len(self.classes) >= 2, "data.classes",
                    f"a {self.task.value} task needs the list of label values (at least 2)")
            dupes = sorted({c for c in self.classes if self.classes.count(c) > 1})
            require(not dupes, "data.classes", f"duplicate classes {dupes}")
            if self.task is Task.binary:
                require(len(self.classes) == 2, "data.classes",
                        f"a binary task needs exactly 2 classes, got {len(self.classes)}")
        self.split.validate()
        self.validation.validate()
        self.source.validate()
