"""Data sources as users have them, read by the real pipeline on the shared cluster: a glob, a folder
as Spark writes it, Parquet under any name, a semicolon CSV with "NA" nulls, a truncated CSV row
(refused naming file and line), and categoricals stored as integers or pandas categoricals."""

from __future__ import annotations

import numpy as np
import pytest

from foundry import config
from foundry.data.pipeline import prepare, validate
from foundry.datasets import generate
from foundry.errors import DataSourceError

ROWS = 3000
PLAN, CONTRACT, REGION = 8, 9, 11  # indices in conf/data/churn.yaml's feature list


def _data_cfg(ray_cluster, path, fmt: str = "parquet", *extra: str):
    path = f"[{','.join(path)}]" if isinstance(path, list) else path
    return config.load([*ray_cluster.overrides, f"data.source.path={path}", f"data.source.format={fmt}",
                        "data.source.synthetic=null", "data.validation.min_rows=100", *extra]).data


def _parts(df, n: int) -> list:
    return [df.iloc[i::n].reset_index(drop=True) for i in range(n)]


def test_a_glob_and_a_list_read_only_the_matching_files(ray_cluster, tmp_path):
    a, b, c = _parts(generate("churn", "baseline", ROWS, seed=5), 3)
    a.to_parquet(tmp_path / "loans-2024-01.parquet", index=False)
    b.to_parquet(tmp_path / "loans-2024-02.parquet", index=False)
    c.to_parquet(tmp_path / "other.parquet", index=False)  # not matched by the glob
    glob = str(tmp_path / "loans-2024-*.parquet")
    prepared = prepare(_data_cfg(ray_cluster, glob))
    assert sum(prepared.split_rows.values()) == len(a) + len(b)
    assert prepared.source_path == glob
    # A list with a glob inside: all three files, the glob's two not counted twice.
    listed = [glob, str(tmp_path / "other.parquet"), str(tmp_path / "loans-2024-01.parquet")]
    _, merged, report = validate(_data_cfg(ray_cluster, listed))
    assert report.rows == ROWS and merged["split_rows"]["train"] > 0


def test_a_spark_folder_reads_every_part_whatever_its_extension(ray_cluster, tmp_path):
    parts = _parts(generate("churn", "baseline", ROWS, seed=6), 3)
    folder = tmp_path / "loans"
    (folder / "year=2024").mkdir(parents=True)
    parts[0].to_parquet(folder / "part-00000.pq", index=False)
    parts[1].to_parquet(folder / "part-00001", index=False)  # no extension
    parts[2].to_parquet(folder / "year=2024" / "part-00002.parquet", index=False)
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / ".part-00000.pq.crc").write_bytes(b"not parquet")
    prepared = prepare(_data_cfg(ray_cluster, str(folder)))
    assert sum(prepared.split_rows.values()) == ROWS
    assert prepared.report.ok and prepared.train.count() == prepared.split_rows["train"]


def test_a_pq_file_reads(ray_cluster, tmp_path):
    generate("churn", "baseline", 500, seed=7).to_parquet(tmp_path / "loans.pq", index=False)
    _, _, report = validate(_data_cfg(ray_cluster, str(tmp_path / "loans.pq")))
    assert report.rows == 500 and report.ok


def test_a_semicolon_csv_with_na_nulls_reads(ray_cluster, tmp_path):
    df = generate("churn", "baseline", ROWS, seed=8)
    df.loc[df.index[::50], "plan"] = None  # "NA" in a text column must read as null, not as a category "NA"
    df.to_csv(tmp_path / "loans.csv", sep=";", na_rep="NA", index=False)
    assert "NA" in (tmp_path / "loans.csv").read_text()
    data = _data_cfg(ray_cluster, str(tmp_path / "loans.csv"), "csv", "data.source.delimiter=';'",
                     f"data.features.{PLAN}.nullable=true")
    prepared = prepare(data)
    assert prepared.report.ok, prepared.report.format()
    assert sum(prepared.split_rows.values()) == ROWS
    assert prepared.preprocessor.categorical[0].categories == ["basic", "premium", "standard"]


def test_a_truncated_csv_row_is_refused_naming_file_and_line(ray_cluster, tmp_path):
    df = generate("churn", "baseline", 2000, seed=9)
    folder = tmp_path / "export"
    folder.mkdir()
    df.iloc[:1000].to_csv(folder / "a.csv", index=False)
    df.iloc[1000:].to_csv(folder / "b.csv", index=False)
    lines = (folder / "b.csv").read_text().splitlines(keepends=True)
    truncated = lines[700].split(",")[:4]
    lines[700] = ",".join(truncated) + "\n"  # line 701 of b.csv: the header is line 1
    (folder / "b.csv").write_text("".join(lines))
    with pytest.raises(DataSourceError) as err:
        validate(_data_cfg(ray_cluster, str(folder), "csv"))
    message = str(err.value)
    assert f"{folder}/b.csv" in message and "line 701" in message, message
    assert ",".join(truncated) in message and "field(s) where the header has" in message
    assert "Traceback" not in message and len(message) < 400, message


def test_integer_coded_and_pandas_categorical_columns_validate_and_encode(ray_cluster, tmp_path):
    df = generate("churn", "baseline", ROWS, seed=10)
    codes = {"north": 1, "south": 2, "east": 3, "west": 4}
    df["region"] = df["region"].map(codes).astype("float64")
    df.loc[df.index[::40], "region"] = np.nan  # an int column with nulls comes back as float: 3.0 is "3"
    df["plan"] = df["plan"].astype("category")  # a Parquet dictionary column of strings
    # Integer codes with nulls, written as a pandas categorical: Parquet keeps only string dictionaries,
    # so Ray hands them back as nullable integers; they must still read "3", never "3.0".
    df["contract"] = df["contract"].map({"monthly": 1, "annual": 2, "two_year": 3}).astype("category")
    df.loc[df.index[5::40], "contract"] = None
    df.to_parquet(tmp_path / "coded.parquet", index=False)
    data = _data_cfg(ray_cluster, str(tmp_path / "coded.parquet"), "parquet",
                     f"data.features.{REGION}.values=[1,2,3,4]", f"data.features.{REGION}.on_unknown=error",
                     f"data.features.{REGION}.nullable=true", f"data.features.{CONTRACT}.values=[1,2,3]",
                     f"data.features.{CONTRACT}.nullable=true")
    prepared = prepare(data)  # on_unknown=error: a '3.0' or a category read wrongly fails validation
    assert prepared.report.ok, prepared.report.format()
    categories = {c.name: c.categories for c in prepared.preprocessor.categorical}
    assert categories["region"] == ["1", "2", "3", "4"] and categories["contract"] == ["1", "2", "3"]
    assert categories["plan"] == ["basic", "premium", "standard"]
    x_cat = np.concatenate([b["x_cat"] for b in prepared.train.iter_batches(batch_size=1024)])
    names = [c.name for c in prepared.preprocessor.categorical]
    unknown = (x_cat == 0).mean(axis=0)  # index 0: null or unseen
    assert unknown[names.index("plan")] == 0
    assert 0 < unknown[names.index("region")] < 0.05 and 0 < unknown[names.index("contract")] < 0.05  # only the nulls
