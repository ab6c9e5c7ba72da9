"""Schema validation as the pipeline runs it: ``profile_batch`` on several chunks, ``merge_profiles``,
then ``build_report``. Each corruption must come back naming the column, the problem and the exact
number of rows that have it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from foundry import config
from foundry.data.schema import (
    MAX_EXAMPLES,
    Problem,
    ValidationReport,
    build_report,
    check_columns,
    merge_profiles,
    profile_batch,
)
from foundry.datasets import generate

ROWS = 2000


@pytest.fixture(scope="module")
def baseline() -> pd.DataFrame:
    return generate("churn", "baseline", ROWS, 0)


@pytest.fixture
def df(baseline) -> pd.DataFrame:
    return baseline.copy()


def _report(frame: pd.DataFrame, data, chunks: int = 3, column_problems=None) -> ValidationReport:
    """What the pipeline does: profile per batch (JSON through the object store), merge, report."""
    bounds = np.linspace(0, len(frame), chunks + 1).astype(int)
    profiles = [json.loads(json.dumps(profile_batch(frame.iloc[a:b], data)))
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return build_report(merge_profiles(profiles), data, list(column_problems or []))


def _only(report: ValidationReport, column: str) -> Problem:
    found = [p for p in report.problems if p.column == column]
    assert len(found) == 1, f"expected one problem for {column!r}, got {found}\n{report.format()}"
    return found[0]


def _rows(rng_seed: int, n: int) -> np.ndarray:
    """n distinct row labels (== positions: RangeIndex) spread over all chunks."""
    return np.sort(np.random.default_rng(rng_seed).choice(ROWS, size=n, replace=False))


def _assert_in_format(report: ValidationReport, column: str, rows: int) -> None:
    text = report.format()
    line = next((ln for ln in text.splitlines() if ln.strip().startswith(column + " ")), None)
    assert line is not None, text
    assert str(rows) in line.split(), text


# ----- clean data

def test_clean_baseline_passes(baseline, cfg):
    assert baseline[["data_usage_gb", "satisfaction"]].isna().any().all()  # it does have acceptable nulls
    report = _report(baseline, cfg.data)
    assert report.problems == [], report.format()
    assert report.ok
    assert report.rows == len(baseline)
    assert report.format().startswith("data validation passed")
    assert str(len(baseline)) in report.format()


@pytest.mark.parametrize("chunks", [1, 2, 3, 7])
def test_chunking_does_not_change_the_report(df, cfg, chunks):
    rows = _rows(1, 37)
    df.loc[rows, "age"] = 150
    df.loc[_rows(2, 11), "plan"] = "gold"
    report = _report(df, cfg.data, chunks=chunks)
    assert _only(report, "age").rows == 37
    assert _only(report, "plan").rows == 11
    assert report.rows == ROWS


def test_clean_variants_pass(baseline, ltv_cfg, seg_cfg):
    for data in (ltv_cfg.data, seg_cfg.data):
        report = _report(baseline, data)
        assert report.problems == [], report.format()


# ----- columns

def test_missing_column_from_arrow_schema(df, cfg):
    frame = df.drop(columns=["tenure_months"])
    arrow = pa.Schema.from_pandas(frame, preserve_index=False)
    problems = check_columns(arrow, cfg.data)
    assert [(p.column, p.problem) for p in problems] == [("tenure_months", "missing column")]
    report = _report(frame, cfg.data, column_problems=problems)
    assert not report.ok
    assert "tenure_months" in report.format() and "missing column" in report.format()


def test_missing_label_column(df, cfg):
    arrow = pa.Schema.from_pandas(df.drop(columns=["churned"]), preserve_index=False)
    problems = check_columns(arrow, cfg.data)
    assert [(p.column, p.problem) for p in problems] == [("churned", "missing label column")]


def test_missing_split_key_column_is_named(df, cfg):
    """A misspelt data.split.key used to fail deep inside Ray Data with a KeyError."""
    arrow = pa.Schema.from_pandas(df.drop(columns=["customer_id"]), preserve_index=False)
    problems = check_columns(arrow, cfg.data)
    assert [(p.column, p.problem) for p in problems] == [("customer_id", "missing split key column (data.split.key)")]


def test_clean_schema_has_no_column_problems(df, cfg):
    assert check_columns(pa.Schema.from_pandas(df, preserve_index=False), cfg.data) == []
    # Numbers that arrive as strings (CSV) are checked per value, not rejected by type.
    df["age"] = df["age"].astype(str)
    assert check_columns(pa.Schema.from_pandas(df, preserve_index=False), cfg.data) == []


def test_wrong_arrow_type_for_numeric(df, cfg):
    df["support_calls"] = df["support_calls"] > 2
    problems = check_columns(pa.Schema.from_pandas(df, preserve_index=False), cfg.data)
    assert [(p.column, p.problem) for p in problems] == [("support_calls", "wrong type")]
    assert "bool" in problems[0].detail


# ----- numeric values

def test_non_numeric_strings(df, cfg):
    rows = _rows(3, 23)
    bad = np.array(["abc", "n/a", "12,5", "?"], dtype=object)[np.arange(len(rows)) % 4]
    col = df["monthly_charges"].astype(object)
    col.iloc[rows] = bad
    df["monthly_charges"] = col
    report = _report(df, cfg.data)
    p = _only(report, "monthly_charges")
    assert "not numeric" in p.problem
    assert p.rows == 23
    assert p.fatal and not report.ok
    # The examples are real offending values, at most MAX_EXAMPLES of them.
    shown = [v for v in ("abc", "n/a", "12,5", "?") if repr(v) in p.detail]
    assert len(shown) >= 2
    assert p.detail.count("'") // 2 <= MAX_EXAMPLES
    _assert_in_format(report, "monthly_charges", 23)


def test_numeric_strings_are_accepted(df, cfg):
    df["age"] = df["age"].astype(str)  # e.g. a CSV column read as text
    assert _report(df, cfg.data).problems == []


def test_below_and_above_range(df, cfg):
    below, above = _rows(4, 9), _rows(5, 14)
    above = np.setdiff1d(above, below)
    df.loc[below, "tenure_months"] = -3
    df.loc[above, "tenure_months"] = 241
    df.loc[above[:1], "tenure_months"] = 999
    report = _report(df, cfg.data)
    problems = {p.problem: p for p in report.problems if p.column == "tenure_months"}
    assert set(problems) == {"values below the allowed minimum", "values above the allowed maximum"}
    assert problems["values below the allowed minimum"].rows == len(below)
    assert problems["values above the allowed maximum"].rows == len(above)
    assert "-3" in problems["values below the allowed minimum"].detail
    assert "999" in problems["values above the allowed maximum"].detail  # the largest value found
    assert not report.ok


def test_bounds_are_inclusive(df, cfg):
    df.loc[_rows(6, 10), "age"] = 18  # min
    df.loc[_rows(7, 10), "satisfaction"] = 10  # max of a nullable column
    assert _report(df, cfg.data).problems == []


def test_inf_values(df, cfg):
    pos, neg = _rows(8, 6), _rows(9, 4)
    neg = np.setdiff1d(neg, pos)
    df["monthly_charges"] = df["monthly_charges"].astype(float)
    df.loc[pos, "monthly_charges"] = np.inf
    df.loc[neg, "monthly_charges"] = -np.inf
    report = _report(df, cfg.data)
    p = _only(report, "monthly_charges")
    assert "inf" in p.problem
    assert p.rows == len(pos) + len(neg)
    assert not report.ok


# ----- nulls

def test_nulls_in_non_nullable_column(df, cfg):
    rows = _rows(10, 17)
    df["age"] = df["age"].astype(float)
    df.loc[rows, "age"] = np.nan
    df.loc[rows[:5], "contract"] = None
    report = _report(df, cfg.data)
    assert _only(report, "age").problem == "nulls in a non-nullable column"
    assert _only(report, "age").rows == 17
    assert _only(report, "contract").rows == 5
    assert not report.ok
    _assert_in_format(report, "age", 17)


def _set_nulls(df: pd.DataFrame, column: str, n: int) -> None:
    """Exactly n nulls in ``column`` (existing nulls filled with a valid value)."""
    df[column] = df[column].fillna(1.0)
    df.loc[_rows(11, n), column] = np.nan


def test_too_many_nulls_in_nullable_column(df, cfg):
    limit = cfg.data.validation.max_null_fraction
    n = int(ROWS * limit) + 1
    _set_nulls(df, "data_usage_gb", n)
    report = _report(df, cfg.data)
    p = _only(report, "data_usage_gb")
    assert p.problem == "too many nulls"
    assert p.rows == n
    assert "max_null_fraction" in p.detail
    assert not report.ok


def test_acceptable_nulls_in_nullable_column(df, cfg):
    n = int(ROWS * cfg.data.validation.max_null_fraction)  # exactly at the limit: allowed
    _set_nulls(df, "data_usage_gb", n)
    assert df["data_usage_gb"].isna().sum() == n
    report = _report(df, cfg.data)
    assert report.problems == [], report.format()


def test_max_null_fraction_override(df, tmp_path):
    cfg = config.load([f"storage.root={tmp_path}", "data.validation.max_null_fraction=0.5"])
    _set_nulls(df, "satisfaction", ROWS // 3)
    assert _report(df, cfg.data).problems == []


@pytest.mark.parametrize("column", ["satisfaction", "age", "region"])
def test_all_null_column(df, cfg, column):
    df[column] = None
    report = _report(df, cfg.data)
    p = _only(report, column)
    assert p.problem == "all values are null"
    assert p.rows == ROWS
    assert not report.ok


# ----- categories

def test_unknown_category_error_is_fatal(df, cfg):
    assert next(f for f in cfg.data.features if f.name == "plan").on_unknown.value == "error"
    gold, vip = _rows(12, 8), _rows(13, 3)
    vip = np.setdiff1d(vip, gold)
    df.loc[gold, "plan"] = "gold"
    df.loc[vip, "plan"] = "vip"
    report = _report(df, cfg.data)
    p = _only(report, "plan")
    assert p.problem == "values outside the allowed categories"
    assert p.rows == len(gold) + len(vip)
    assert p.fatal and not report.ok
    assert f"'gold' x{len(gold)}" in p.detail and f"'vip' x{len(vip)}" in p.detail
    _assert_in_format(report, "plan", len(gold) + len(vip))


def test_unknown_category_allow_is_a_warning(df, cfg):
    assert next(f for f in cfg.data.features if f.name == "payment_method").on_unknown.value == "allow"
    rows = _rows(14, 25)
    df.loc[rows, "payment_method"] = "crypto"
    report = _report(df, cfg.data)
    p = _only(report, "payment_method")
    assert p.rows == 25
    assert not p.fatal
    assert report.ok
    assert report.warnings == [p]
    assert "warning" in report.format() and "crypto" in report.format()
    assert report.format().startswith("data validation passed")


def test_new_category_scenario_only_warns(cfg):
    frame = generate("churn", "new_category", ROWS, 0)
    report = _report(frame, cfg.data)
    assert report.ok, report.format()
    expected = {"payment_method": int((frame["payment_method"] == "crypto").sum()),
                "region": int((frame["region"] == "central").sum())}
    assert {p.column: p.rows for p in report.warnings} == expected
    assert all(v > 0 for v in expected.values())


def test_integer_categories_match_as_strings(tmp_path):
    """A categorical stored as numbers (with nulls: floats) must compare as '1', not '1.0'."""
    cfg = config.load([f"storage.root={tmp_path}", "data.features.8.values=[1,2,3]",
                       "data.features.8.nullable=true"])
    assert cfg.data.features[8].name == "plan"
    frame = generate("churn", "baseline", 300, 0)
    frame["plan"] = frame["plan"].map({"basic": 1, "standard": 2, "premium": 3}).astype(float)
    frame.loc[[3, 4], "plan"] = np.nan
    report = _report(frame, cfg.data)
    assert [p.column for p in report.problems] == ["*"]  # only "too few rows" (300 < min_rows)


# ----- label

def test_label_nulls_and_unknown_classes(df, cfg):
    nulls, bad = _rows(15, 7), _rows(16, 12)
    bad = np.setdiff1d(bad, nulls)
    df["churned"] = df["churned"].astype(float)
    df.loc[nulls, "churned"] = np.nan
    df.loc[bad, "churned"] = 2
    report = _report(df, cfg.data)
    problems = {p.problem: p for p in report.problems if p.column == "churned"}
    assert set(problems) == {"nulls in the label", "label values outside data.classes"}
    assert problems["nulls in the label"].rows == len(nulls)
    unknown = problems["label values outside data.classes"]
    assert unknown.rows == len(bad)
    assert f"'2' x{len(bad)}" in unknown.detail  # the float 2.0 reads as the class '2'
    assert len(report.problems) == 2  # 0.0/1.0 floats (label with nulls) are valid classes
    assert not report.ok


def test_multiclass_label_outside_classes(df, seg_cfg):
    rows = _rows(17, 9)
    df.loc[rows, "segment"] = "vip"
    p = _only(_report(df, seg_cfg.data), "segment")
    assert p.rows == 9
    assert "vip" in p.detail


def test_regression_label_not_numeric(df, ltv_cfg):
    text, inf = _rows(18, 13), _rows(19, 4)
    inf = np.setdiff1d(inf, text)
    col = df["lifetime_value"].astype(object)
    col.iloc[text] = "unknown"
    col.iloc[inf] = np.inf
    df["lifetime_value"] = col
    report = _report(df, ltv_cfg.data)
    p = _only(report, "lifetime_value")
    assert p.problem == "label values are not finite numbers"
    assert p.rows == len(text) + len(inf)
    assert not report.ok


def test_regression_label_nulls(df, ltv_cfg):
    df.loc[_rows(20, 6), "lifetime_value"] = np.nan
    p = _only(_report(df, ltv_cfg.data), "lifetime_value")
    assert (p.problem, p.rows) == ("nulls in the label", 6)


# ----- size

def test_empty_data_set(baseline, cfg):
    report = _report(baseline.iloc[:0], cfg.data, chunks=1)
    assert report.rows == 0
    assert [(p.column, p.problem) for p in report.problems] == [("*", "empty data set")]
    assert not report.ok
    assert "empty data set" in report.format()


def test_too_few_rows(baseline, cfg):
    n = cfg.data.validation.min_rows - 1
    report = _report(baseline.iloc[:n], cfg.data)
    p = _only(report, "*")
    assert (p.problem, p.rows) == ("too few rows", n)
    assert str(cfg.data.validation.min_rows) in p.detail
    assert not report.ok
    ok = _report(baseline.iloc[:cfg.data.validation.min_rows], cfg.data)
    assert ok.problems == [], ok.format()


# ----- everything at once

def test_several_problems_are_all_reported(df, cfg):
    df.loc[_rows(21, 3), "age"] = 5
    df.loc[_rows(22, 4), "plan"] = "gold"
    df.loc[_rows(23, 5), "region"] = "mars"
    report = _report(df, cfg.data)
    got = {(p.column, p.rows, p.fatal) for p in report.problems}
    assert got == {("age", 3, True), ("plan", 4, True), ("region", 5, False)}
    text = report.format()
    assert text.startswith("data validation failed: 2 problem(s) in 2000 rows")
    lines = text.splitlines()
    # Errors are listed before warnings.
    assert max(i for i, ln in enumerate(lines) if " error " in ln) < min(
        i for i, ln in enumerate(lines) if " warning " in ln)
