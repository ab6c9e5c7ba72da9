"""The Ray Data pipeline on the shared cluster: good data prepares, every kind of bad file is refused clearly."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from foundry import config
from foundry.data.pipeline import prepare, validate
from foundry.datasets import generate
from foundry.errors import DataSourceError, DataValidationError


def _data_cfg(ray_cluster, path: str, fmt: str = "parquet"):
    return config.load([*ray_cluster.overrides, f"data.source.path={path}", f"data.source.format={fmt}",
                        "data.source.synthetic=null", "data.validation.min_rows=100"]).data


def _write(df, path) -> str:
    df.to_parquet(path, index=False)
    return str(path)


def test_prepare_splits_fits_and_samples(ray_cluster, tmp_path):
    df = generate("churn", "baseline", 5000, seed=3)
    data = _data_cfg(ray_cluster, _write(df, tmp_path / "ok.parquet"))
    prepared = prepare(data)
    assert sum(prepared.split_rows.values()) == 5000
    assert prepared.report.ok and not prepared.report.problems
    batch = prepared.train.take_batch(64)
    assert batch["x_num"].shape[1] == prepared.preprocessor.numeric_width
    assert batch["x_cat"].shape[1] == len(prepared.preprocessor.categorical)
    assert prepared.train.count() == prepared.split_rows["train"]
    # Same data, same fingerprint and reference sample: a rerun is reproducible.
    again = prepare(data)
    assert again.fingerprint == prepared.fingerprint
    assert again.reference.equals(prepared.reference)
    # A changed row changes the fingerprint.
    df.loc[0, "age"] = 19 if df.loc[0, "age"] != 19 else 20
    changed = prepare(_data_cfg(ray_cluster, _write(df, tmp_path / "changed.parquet")))
    assert changed.fingerprint != prepared.fingerprint


def test_missing_label_column_is_named(ray_cluster, tmp_path):
    df = generate("churn", "baseline", 500, seed=3).drop(columns=["churned"])
    with pytest.raises(DataValidationError) as err:
        validate(_data_cfg(ray_cluster, _write(df, tmp_path / "nolabel.parquet")))
    assert "churned" in str(err.value) and "missing label column" in str(err.value)


def test_zero_rows_is_an_empty_data_set(ray_cluster, tmp_path):
    df = generate("churn", "baseline", 50, seed=3).iloc[:0]
    with pytest.raises(DataValidationError) as err:
        validate(_data_cfg(ray_cluster, _write(df, tmp_path / "empty.parquet")))
    assert "empty data set" in str(err.value)


def test_all_null_column_is_refused(ray_cluster, tmp_path):
    df = generate("churn", "baseline", 500, seed=3)
    df["satisfaction"] = None
    with pytest.raises(DataValidationError) as err:
        validate(_data_cfg(ray_cluster, _write(df, tmp_path / "allnull.parquet")))
    assert "satisfaction" in str(err.value) and "all values are null" in str(err.value)


def test_wrong_type_column_is_named(ray_cluster, tmp_path):
    df = generate("churn", "baseline", 500, seed=3)
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.set_column(table.schema.get_field_index("age"), "age",
                             pa.array([True] * len(df), type=pa.bool_()))
    path = tmp_path / "bool_age.parquet"
    pq.write_table(table, path)
    with pytest.raises(DataValidationError) as err:
        validate(_data_cfg(ray_cluster, str(path)))
    assert "age" in str(err.value) and "wrong type" in str(err.value)


def test_truncated_parquet_is_a_clear_source_error(ray_cluster, tmp_path):
    good = tmp_path / "good.parquet"
    _write(generate("churn", "baseline", 2000, seed=3), good)
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataSourceError) as err:
        validate(_data_cfg(ray_cluster, str(truncated)))
    assert "truncated.parquet" in str(err.value)


def test_missing_file_is_a_clear_source_error(ray_cluster, tmp_path):
    with pytest.raises(DataSourceError) as err:
        validate(_data_cfg(ray_cluster, str(tmp_path / "nope.parquet")))
    assert "does not exist" in str(err.value)
