"""Foundry's Parquet read (foundry/data/parquet_files.py) without a cluster: how files are grouped into
read tasks, what one task reads, and what it refuses. A real read through Ray is in
tests/integration/test_data_sources.py and test_data_pipeline.py."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from foundry.data import parquet_files


@pytest.mark.parametrize(("sizes", "groups", "expected"), [
    ([1] * 16, 4, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]),
    ([1, 1, 1, 1, 100], 4, [[0, 1], [2], [3], [4]]),  # never fewer files than groups left to fill
    ([5, 1, 1, 1, 1, 1, 5], 3, [[0], [1, 2, 3, 4, 5], [6]]),  # by bytes, not by count
    ([0, 0, 0], 4, [[0], [1], [2]]),  # no sizes known, more groups than files: one file each
    ([7], 1, [[0]]),
    ([3, 3, 3], 1, [[0, 1, 2]]),
])
def test_files_are_grouped_into_neighbouring_runs_of_about_equal_bytes(sizes, groups, expected):
    paths = [f"f{i}" for i in range(len(sizes))]
    got = parquet_files.file_groups(paths, sizes, groups)
    assert got == expected
    assert [i for g in got for i in g] == list(range(len(sizes)))  # every file once, in order


def _write(path, frame: pd.DataFrame) -> str:
    frame.to_parquet(path)
    return str(path)


def test_a_group_reads_as_one_table_in_file_order_with_types_promoted(tmp_path):
    a = _write(tmp_path / "a.parquet", pd.DataFrame({"x": [1, 2], "s": ["p", "q"]}))
    b = _write(tmp_path / "b.parquet", pd.DataFrame({"x": [2.5], "s": ["r"]}))  # float where a has int
    table = parquet_files.read_group(pafs.LocalFileSystem(), [a, b])
    assert table.column("x").to_pylist() == [1.0, 2.0, 2.5]
    assert table.column("s").to_pylist() == ["p", "q", "r"]


def test_a_file_that_does_not_read_is_named(tmp_path):
    good = _write(tmp_path / "good.parquet", pd.DataFrame({"x": [1, 2]}))
    bad = tmp_path / "part-00001"
    bad.write_bytes((tmp_path / "good.parquet").read_bytes()[:20])  # truncated: no footer
    with pytest.raises(OSError, match=f"failed to read Parquet file {bad}"):
        parquet_files.read_group(pafs.LocalFileSystem(), [good, str(bad)])


def test_files_whose_columns_do_not_combine_are_named(tmp_path):
    a = _write(tmp_path / "a.parquet", pd.DataFrame({"x": [1, 2]}))
    b = _write(tmp_path / "b.parquet", pd.DataFrame({"x": ["one"]}))
    with pytest.raises(OSError, match="a.parquet .. .*b.parquet hold columns of types that do not combine"):
        parquet_files.read_group(pafs.LocalFileSystem(), [a, b])


def test_a_pickled_object_column_is_refused_before_its_values_are_read(tmp_path):
    # Ray's pickled-object extension type: reading its values would unpickle (run code).
    from ray.data._internal.object_extensions.arrow import ArrowPythonObjectArray

    path = tmp_path / "objects.parquet"
    pq.write_table(pa.table({"obj": ArrowPythonObjectArray.from_objects([object(), object()])}), path)
    with pytest.raises(ValueError, match="arrow_pickled_object"):
        parquet_files.read_group(pafs.LocalFileSystem(), [str(path)])


def test_the_read_tasks_cover_every_file_once_with_the_first_files_schema(tmp_path):
    paths = [_write(tmp_path / f"p{i}.parquet", pd.DataFrame({"x": [i] * (i + 1)})) for i in range(5)]
    sizes = [1, 1, 1, 1, 1]
    source = parquet_files.ParquetFilesDatasource(pafs.LocalFileSystem(), paths, sizes, 2)
    tasks = source.get_read_tasks(2)
    assert [list(t.metadata.input_files) for t in tasks] == [paths[:3], paths[3:]]
    assert all(t.schema == pq.read_schema(paths[0]) for t in tasks)
    read = [list(t.read_fn()) for t in tasks]
    assert [block[0].column("x").to_pylist() for block in read] == [[0, 1, 1, 2, 2, 2], [3] * 4 + [4] * 5]
    assert source.estimate_inmemory_data_size() == 5 * parquet_files.IN_MEMORY_PER_DISK_BYTE
