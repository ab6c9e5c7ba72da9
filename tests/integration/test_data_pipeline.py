"""The Ray Data pipeline on the shared cluster: good data prepares, every kind of bad file is refused clearly."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from foundry import config
from foundry.data.pipeline import prepare, validate
from foundry.datasets import generate
from foundry.errors import DataSourceError, DataValidationError


def _data_cfg(ray_cluster, path: str, fmt: str = "parquet", extra: tuple[str, ...] | list[str] = ()):
    return config.load([*ray_cluster.overrides, f"data.source.path={path}", f"data.source.format={fmt}",
                        "data.source.synthetic=null", "data.validation.min_rows=100", *extra]).data


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


def _encoded_sums(dataset) -> dict:
    import numpy as np

    sums: dict = {}
    for batch in dataset.iter_batches(batch_format="numpy", batch_size=None):
        for key, value in batch.items():
            sums[key] = sums.get(key, 0) + np.asarray(value, dtype="float64").reshape(len(value), -1).sum(axis=0)
    return sums


def test_a_materialized_parquet_source_is_staged_by_plain_tasks_to_the_streaming_result(ray_cluster, tmp_path,
                                                                                        monkeypatch, caplog):
    # foundry/data/block_tasks.py: one Ray task per group of files instead of a Ray Data execution, wrapped
    # as the MaterializedDataset Ray would return; the result equals Ray Data's streaming path's.
    import logging

    import numpy as np

    from foundry.data import block_tasks

    folder = tmp_path / "parts"
    folder.mkdir()
    df = generate("churn", "baseline", 6000, seed=5)
    for i, part in enumerate(np.array_split(np.arange(len(df)), 3)):
        _write(df.iloc[part], folder / f"part-{i}.parquet")
    data = _data_cfg(ray_cluster, str(folder))
    monkeypatch.setattr(block_tasks, "PROGRESS_EVERY_S", 0.001)
    with caplog.at_level(logging.INFO, logger=block_tasks.__name__):
        staged, merged, _ = validate(data)
    assert type(staged._logical_plan.dag).__name__ == "FromArrow"  # no Ray Data execution behind it
    assert staged.count() == 6000 and sum(merged["split_rows"].values()) == 6000
    assert any(" of " in r.getMessage() and "blocks" in r.getMessage() for r in caplog.records)  # progress
    by_tasks = prepare(data)
    streamed = prepare(_data_cfg(ray_cluster, str(folder), extra=["data.materialize=false"]))
    assert by_tasks.fingerprint == streamed.fingerprint and by_tasks.split_rows == streamed.split_rows
    assert by_tasks.preprocessor == streamed.preprocessor and by_tasks.reference.equals(streamed.reference)
    for which in ("train", "val"):
        ours, theirs = _encoded_sums(getattr(by_tasks, which)), _encoded_sums(getattr(streamed, which))
        assert ours.keys() == theirs.keys()
        assert all(np.allclose(ours[k], theirs[k]) for k in ours)

