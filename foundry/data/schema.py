"""Schema validation: find every way a data set breaks its schema, in one streaming pass.

The check is split in two so it can run on Ray Data without collecting the data: the counts of one
block (``numeric_profile``, ``categorical_profile``, ``label_profile``; the pipeline's Arrow blocks call
them from foundry/data/blocks.py, ``profile_batch`` from a pandas batch), and
``ValidationReport.build`` merges the small per-batch counts on the driver and turns them into
problems that name the column, the problem and how many rows have it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from foundry.config import DataConfig, FeatureSpec, FeatureType, Task, UnknownCategoryPolicy
from foundry.data.values import category_strings

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Problem:
    column: str
    problem: str
    rows: int
    detail: str = ""
    fatal: bool = True


@dataclass
class ValidationReport:
    rows: int
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.fatal for p in self.problems)

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.fatal]

    def format(self) -> str:
        fatal = [p for p in self.problems if p.fatal]
        head = (f"data validation failed: {len(fatal)} problem(s) in {self.rows} rows" if fatal
                else f"data validation passed: {self.rows} rows")
        if not self.problems:
            return head
        width = max(len(p.column) for p in self.problems)
        lines = [head, f"  {'column'.ljust(width)}  {'severity':8}  {'rows':>8}  problem"]
        for p in sorted(self.problems, key=lambda p: (not p.fatal, p.column)):
            sev = "error" if p.fatal else "warning"
            detail = f" ({p.detail})" if p.detail else ""
            lines.append(f"  {p.column.ljust(width)}  {sev:8}  {p.rows:>8}  {p.problem}{detail}")
        return "\n".join(lines)


def _is_numeric_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_null(t)


def check_columns(schema: pa.Schema, data: DataConfig) -> list[Problem]:
    """Problems visible from the column list and types alone (no data read)."""
    found = {name: schema.field(name).type for name in schema.names}
    problems = []
    for f in data.features:
        if f.name not in found:
            problems.append(Problem(f.name, "missing column", 0, f"columns present: {sorted(found)[:20]}"))
        elif f.type is FeatureType.numeric and not (_is_numeric_type(found[f.name]) or
                                                    pa.types.is_string(found[f.name])
                                                    or pa.types.is_large_string(found[f.name])):
            problems.append(Problem(f.name, "wrong type", 0, f"expected numeric, found {found[f.name]}"))
    if data.label not in found:
        problems.append(Problem(data.label, "missing label column", 0, f"columns present: {sorted(found)[:20]}"))
    key = data.split.key
    for column in ([key] if isinstance(key, str) else list(key or [])):
        if column not in found:
            problems.append(Problem(column, "missing split key column (data.split.key)", 0,
                                    f"columns present: {sorted(found)[:20]}"))
    return problems


def numeric_profile(values: np.ndarray, nulls: np.ndarray, not_numeric: np.ndarray | None, examples: list[str],
                    f: FeatureSpec) -> dict:
    """The profile of a numeric column from its float64 values (NaN for null or unparseable), the nulls and
    the unparseable cells (None: the column's type is numeric). Shared by the pandas and Arrow paths."""
    nan = np.isnan(values)
    finite = np.isfinite(values)
    vals = values[finite]
    return {
        "nulls": int(nulls.sum()),
        "not_numeric": int(not_numeric.sum()) if not_numeric is not None else 0,
        "not_numeric_examples": examples[:MAX_EXAMPLES],
        "not_finite": int((~nan & ~finite).sum()),
        "below_min": int((vals < f.min).sum()) if f.min is not None else 0,
        "above_max": int((vals > f.max).sum()) if f.max is not None else 0,
        "min": float(vals.min()) if vals.size else None,
        "max": float(vals.max()) if vals.size else None,
    }


def categorical_profile(nulls: int, counts: dict[str, int], f: FeatureSpec) -> dict:
    """The profile of a categorical column from its null count and its rows per category string."""
    unknown = {} if f.values is None else {k: v for k, v in counts.items() if k not in set(f.values)}
    return {"nulls": int(nulls), "unknown": unknown}


def label_profile(nulls: int, counts: dict[str, int] | None, not_finite: int, data: DataConfig) -> dict:
    """The label's profile: classes outside ``data.classes`` (classification) or values that are no
    finite number (regression, ``counts`` None)."""
    unknown = {} if counts is None else {k: v for k, v in counts.items() if k not in set(data.classes)}
    return {"nulls": int(nulls), "unknown": unknown, "not_numeric": int(not_finite)}


def _profile_numeric(col: pd.Series, f: FeatureSpec) -> dict:
    nulls = col.isna().to_numpy(dtype=bool)
    # Through float64 with NaN for both NA and unparseable text: nullable dtypes keep NaN and NA
    # apart, which would let unparseable values slip through as "not null".
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    not_numeric = np.isnan(values) & ~nulls
    return numeric_profile(values, nulls, not_numeric, [str(v) for v in col[not_numeric].head(MAX_EXAMPLES)], f)


def _profile_categorical(col: pd.Series, f: FeatureSpec) -> dict:
    present = col[~col.isna()]
    counts = {} if f.values is None else category_strings(present).value_counts().to_dict()
    return categorical_profile(len(col) - len(present), {str(k): int(v) for k, v in counts.items()}, f)


def _profile_label(col: pd.Series, data: DataConfig) -> dict:
    nulls = col.isna()
    if data.task is Task.regression:
        as_num = pd.to_numeric(col[~nulls], errors="coerce")
        bad = int((as_num.isna() | ~np.isfinite(as_num.fillna(0).to_numpy(float))).sum())
        return label_profile(int(nulls.sum()), None, bad, data)
    counts = category_strings(col[~nulls]).value_counts().to_dict()
    return label_profile(int(nulls.sum()), {str(k): int(v) for k, v in counts.items()}, 0, data)


def profile_batch(df: pd.DataFrame, data: DataConfig) -> dict:
    """Counts of every problem in one batch. Small, JSON-friendly, and mergeable by summing."""
    out = {"rows": len(df), "features": {}, "label": None}
    for f in data.features:
        if f.name not in df.columns:
            continue
        col = df[f.name]
        fn = _profile_numeric if f.type is FeatureType.numeric else _profile_categorical
        out["features"][f.name] = fn(col, f)
    if data.label in df.columns:
        out["label"] = _profile_label(df[data.label], data)
    return out


def _merge(a: dict, b: dict) -> dict:
    """Sum counts, union example lists (capped), merge value-count dicts, and take min/max of extremes."""
    out = dict(a)
    for k, v in b.items():
        if k not in out or out[k] is None:
            out[k] = v
        elif v is None:
            continue
        elif k == "min":
            out[k] = min(out[k], v)
        elif k == "max":
            out[k] = max(out[k], v)
        elif isinstance(v, dict) and k in ("unknown",):
            out[k] = dict(Counter(out[k]) + Counter(v))
        elif isinstance(v, dict):
            out[k] = _merge(out[k], v)
        elif isinstance(v, list):
            out[k] = (out[k] + v)[:MAX_EXAMPLES]
        else:
            out[k] = out[k] + v
    return out


def merge_profiles(profiles: list[dict]) -> dict:
    merged: dict = {"rows": 0, "features": {}, "label": None}
    for p in profiles:
        merged = _merge(merged, p)
    return merged


def _examples(counts: dict) -> str:
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:MAX_EXAMPLES]
    return ", ".join(f"{k!r} x{v}" for k, v in top)


def _feature_problems(f: FeatureSpec, s: dict, rows: int, max_null_fraction: float) -> list[Problem]:
    problems = []
    nulls = s["nulls"]
    if nulls == rows:
        problems.append(Problem(f.name, "all values are null", nulls))
    elif nulls and not f.nullable:
        problems.append(Problem(f.name, "nulls in a non-nullable column", nulls))
    elif nulls and nulls / rows > max_null_fraction:
        problems.append(Problem(f.name, "too many nulls", nulls,
                                f"{nulls / rows:.1%} > data.validation.max_null_fraction={max_null_fraction:.1%}"))
    if f.type is FeatureType.numeric:
        if s["not_numeric"]:
            problems.append(Problem(f.name, "wrong type: values are not numeric", s["not_numeric"],
                                    "e.g. " + ", ".join(repr(v) for v in s["not_numeric_examples"])))
        if s["not_finite"]:
            problems.append(Problem(f.name, "non-finite values (inf)", s["not_finite"]))
        if s["below_min"]:
            problems.append(Problem(f.name, "values below the allowed minimum", s["below_min"],
                                    f"min allowed {f.min}, smallest found {s['min']}"))
        if s["above_max"]:
            problems.append(Problem(f.name, "values above the allowed maximum", s["above_max"],
                                    f"max allowed {f.max}, largest found {s['max']}"))
    elif s["unknown"]:
        fatal = f.on_unknown is UnknownCategoryPolicy.error
        problems.append(Problem(f.name, "values outside the allowed categories", sum(s["unknown"].values()),
                                f"{_examples(s['unknown'])}; allowed {list(f.values)}", fatal=fatal))
    return problems


def build_report(profile: dict, data: DataConfig, column_problems: list[Problem]) -> ValidationReport:
    rows = profile["rows"]
    report = ValidationReport(rows=rows, problems=list(column_problems))
    if rows == 0:
        report.problems.append(Problem("*", "empty data set", 0))
        return report
    if rows < data.validation.min_rows:
        report.problems.append(Problem("*", "too few rows", rows,
                                       f"data.validation.min_rows={data.validation.min_rows}"))
    for f in data.features:
        if f.name in profile["features"]:
            report.problems += _feature_problems(f, profile["features"][f.name], rows,
                                                 data.validation.max_null_fraction)
    label = profile.get("label")
    if label:
        if label["nulls"]:
            report.problems.append(Problem(data.label, "nulls in the label", label["nulls"]))
        if label["unknown"]:
            report.problems.append(Problem(data.label, "label values outside data.classes",
                                           sum(label["unknown"].values()),
                                           f"{_examples(label['unknown'])}; classes {list(data.classes)}"))
        if label["not_numeric"]:
            report.problems.append(Problem(data.label, "label values are not finite numbers",
                                           label["not_numeric"]))
    return report
