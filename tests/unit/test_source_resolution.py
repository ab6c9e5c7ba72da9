"""Data sources as users have them (no Ray): a folder, a glob, a list, Parquet under any name, CSV
options, the errors when nothing matches or a CSV row is malformed, and categoricals stored as
pandas categoricals, strings or integers."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest

from foundry import config
from foundry.config import SourceConfig, SourceFormat, SyntheticSourceConfig
from foundry.data import sources
from foundry.data.values import category_strings
from foundry.datasets import ensure_source
from foundry.errors import ConfigError, DataSourceError


def _touch(root, *names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def _files(path, fmt=SourceFormat.parquet) -> list[str]:
    return sources.resolve(SourceConfig(path=path, format=fmt)).uris


@pytest.fixture
def spark_dir(tmp_path):
    """What Spark leaves behind: part files (any extension), a marker, a staging folder, temporaries."""
    d = tmp_path / "loans"
    _touch(d, "part-00001.parquet", "part-00000.pq", "part-00002", "year=2024/part-0.parquet",
           "_SUCCESS", ".part-00000.crc", "_temporary/0/part-9.parquet", ".spark-staging/x.parquet")
    return d


# ---- resolution --------------------------------------------------------------------------------------

def test_a_folder_is_every_visible_file_below_it_sorted(spark_dir):
    assert _files(str(spark_dir)) == [str(spark_dir / n) for n in
                                      ("part-00000.pq", "part-00001.parquet", "part-00002", "year=2024/part-0.parquet")]


def test_a_glob_matches_within_one_folder_and_skips_hidden_names(spark_dir):
    assert _files(f"{spark_dir}/part-*") == [str(spark_dir / n) for n in
                                             ("part-00000.pq", "part-00001.parquet", "part-00002")]
    assert _files(f"{spark_dir}/*.parquet") == [str(spark_dir / "part-00001.parquet")]
    assert _files(f"{spark_dir}/**/*.parquet") == [str(spark_dir / "part-00001.parquet"),
                                                   str(spark_dir / "year=2024/part-0.parquet")]
    # A glob that names a hidden file on purpose gets it.
    assert _files(f"{spark_dir}/_SUC*") == [str(spark_dir / "_SUCCESS")]


def test_a_list_mixes_files_and_globs_without_duplicates(spark_dir, tmp_path):
    _touch(tmp_path, "extra/jan.pq")
    got = _files([str(tmp_path / "extra/jan.pq"), f"{spark_dir}/part-0000[01]*", str(spark_dir / "part-00000.pq")])
    assert got == [str(tmp_path / "extra/jan.pq"), str(spark_dir / "part-00000.pq"), str(spark_dir / "part-00001.parquet")]


def test_a_file_of_any_extension_is_itself(tmp_path):
    _touch(tmp_path, "data.pq", "export")
    assert _files(str(tmp_path / "data.pq")) == [str(tmp_path / "data.pq")]
    assert _files(str(tmp_path / "export")) == [str(tmp_path / "export")]


def test_a_relative_path_becomes_absolute(tmp_path, monkeypatch):
    _touch(tmp_path, "d/a.csv")
    monkeypatch.chdir(tmp_path)
    assert _files("d/*.csv", SourceFormat.csv) == [str(tmp_path / "d/a.csv")]


def test_nothing_matching_names_the_glob_and_what_the_folder_holds(tmp_path):
    _touch(tmp_path, "x/a.parquet", "x/b.parquet")
    with pytest.raises(DataSourceError) as err:
        _files(f"{tmp_path}/x/*.csv")
    assert str(err.value) == (f"data.source.path: no files match {tmp_path}/x/*.csv "
                              f"(the folder {tmp_path}/x holds: a.parquet, b.parquet)")
    assert err.value.exit_code == 3


def test_a_list_entry_matching_nothing_is_named_by_its_index(tmp_path):
    _touch(tmp_path, "a.csv")
    with pytest.raises(DataSourceError, match=r"data\.source\.path\[1\]: no files match .*/nope/\*\.csv "
                                              r"\(the folder .*/nope does not exist\)"):
        _files([str(tmp_path / "a.csv"), f"{tmp_path}/nope/*.csv"])


def test_a_missing_file_and_an_empty_folder_are_source_errors(spark_dir, tmp_path):
    with pytest.raises(DataSourceError, match=r"data\.source\.path: .*/loans/nope\.parquet does not exist "
                                              r"\(the folder .*/loans holds: .*part-00000\.pq"):
        _files(str(spark_dir / "nope.parquet"))
    _touch(tmp_path, "empty/_SUCCESS", "empty/_temporary/0/part-0.parquet")
    with pytest.raises(DataSourceError, match=r"no data files below .*/empty, names starting with _ or \. left out "
                                              r"\(the folder .*/empty holds: _SUCCESS, _temporary/\)"):
        _files(str(tmp_path / "empty"))


def test_a_glob_cannot_replace_the_bucket_name():
    with pytest.raises(DataSourceError, match="bucket name"):
        _files("s3://loans-*/part-0.parquet")


def test_read_blocks_follow_the_data_size(tmp_path):
    """One read block per BLOCK_BYTES on disk, at most one per file: the 2,000,000-row benchmark set
    (16 files of ~2.8 MB) is read in 4 blocks, not one (Ray's V2 default) nor 16 (a task's fixed cost each)."""
    import pyarrow.fs as pafs

    def files(n: int, size: int) -> sources.SourceFiles:
        paths = []
        for i in range(n):
            path = tmp_path / f"{n}-{size}-{i}"
            path.write_bytes(b"\0" * size)
            paths.append(str(path))
        return sources.SourceFiles(pafs.LocalFileSystem(), paths, paths)

    parquet = config.load([f"storage.root={tmp_path}"]).data.source
    assert sources.num_blocks(files(16, 2_900_000), parquet) == 4
    assert sources.num_blocks(files(1, 2_900_000), parquet) == 1
    assert sources.num_blocks(files(40, 10_000), parquet) == 1  # many small files share a block
    assert sources.num_blocks(files(3, 3 * sources.BLOCK_BYTES["parquet"]), parquet) == 3  # a file is one task


def test_file_sizes_are_asked_once_and_are_zeros_when_the_files_cannot_be_listed(tmp_path):
    """On object storage each size is a request: the listing is asked once per SourceFiles. A filesystem
    that cannot list now gives no sizes (the read will say why) and the grouping gets zeros (by count)."""

    class CountingFilesystem:
        def __init__(self, fail: bool):
            self.calls, self.fail = 0, fail

        def get_file_info(self, paths):
            self.calls += 1
            if self.fail:
                raise OSError("listing refused")
            return [pafs.LocalFileSystem().get_file_info(p) for p in paths]

    (tmp_path / "a").write_bytes(b"x" * 3)
    (tmp_path / "b").write_bytes(b"x" * 5)
    paths = [str(tmp_path / "a"), str(tmp_path / "b")]
    listed = sources.SourceFiles(CountingFilesystem(fail=False), paths, paths)
    assert listed.sizes == [3, 5] and listed.sizes_or_zeros == [3, 5] and listed.sizes == [3, 5]
    assert listed.filesystem.calls == 1
    unlistable = sources.SourceFiles(CountingFilesystem(fail=True), paths, paths)
    assert unlistable.sizes == [] and unlistable.sizes_or_zeros == [0, 0]


def test_uris_keep_their_scheme():
    assert sources._uri("s3://bucket/loans/*.pq", "bucket/loans/a.pq") == "s3://bucket/loans/a.pq"
    assert sources._uri("/data/*.pq", "/data/a.pq") == "/data/a.pq"
    assert sources.describe(["/a/x.csv", "s3://b/y/"]) == "/a/x.csv, s3://b/y"
    assert sources.normalized(["/a/x.csv"]) == ["/a/x.csv"] and sources.normalized("/a/x.csv") == "/a/x.csv"


# ---- config ------------------------------------------------------------------------------------------

def _load(tmp_path, *overrides):
    return config.load([f"storage.root={tmp_path}", "data.source.synthetic=null", "data.source.path=/data/x.parquet",
                        *overrides])


def test_path_takes_a_string_or_a_list_and_csv_options_have_defaults(tmp_path):
    cfg = _load(tmp_path, "data.source.path=[/data/a/*.csv,/data/b.csv]", "data.source.format=csv",
                "data.source.delimiter=';'")
    assert cfg.data.source.path == ["/data/a/*.csv", "/data/b.csv"]
    assert cfg.data.source.delimiter == ";"
    assert {"", "NA", "null"} <= set(cfg.data.source.null_values)
    assert _load(tmp_path, "data.source.path=/data/loans/*.csv").data.source.path == "/data/loans/*.csv"


@pytest.mark.parametrize(("override", "key"), [
    ("data.source.path=[]", "data.source.path"),
    ("data.source.path=[/a.csv,'']", "data.source.path"),
    ("data.source.path=''", "data.source.path"),
    ("data.source.path=5", "data.source.path"),
    ("data.source.path={a: 1}", "data.source.path"),
    ("data.source.delimiter=''", "data.source.delimiter"),
    ("data.source.delimiter=';;'", "data.source.delimiter"),
])
def test_bad_path_shapes_and_delimiters_name_the_key(tmp_path, override, key):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, override)
    assert str(err.value).startswith(f"{key}:")


def test_ensure_source_generates_only_at_a_single_file(tmp_path):
    synthetic = SyntheticSourceConfig(rows=200)
    glob = SourceConfig(path=f"{tmp_path}/gen/*.parquet", synthetic=synthetic)
    assert ensure_source(glob) == f"{tmp_path}/gen/*.parquet"
    listed = SourceConfig(path=[f"{tmp_path}/gen/a.parquet"], synthetic=synthetic)
    assert ensure_source(listed) == f"{tmp_path}/gen/a.parquet"
    assert not (tmp_path / "gen").exists()


# ---- a malformed CSV row, found ----------------------------------------------------------------------

def test_the_bad_line_finder_names_the_line_of_a_short_row(tmp_path):
    path = tmp_path / "loans.csv"
    path.write_text('id;note;amount\n1;"two\nlines";3\n\n4;x;5\n6;truncated\n7;y;8\n')
    bad = sources.find_bad_csv_line(pafs.LocalFileSystem(), str(path), ";")
    # Line 6: the quoted field spans lines 2-3 and the empty line 4 counts, as in an editor.
    assert bad == sources.BadLine(6, "2 field(s) where the header has 3", "6;truncated")


def test_the_bad_line_finder_reads_gzip_and_passes_good_files(tmp_path):
    path = tmp_path / "good.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n3,4\n"))
    assert sources.find_bad_csv_line(pafs.LocalFileSystem(), str(path)) is None
    (tmp_path / "long.csv").write_text("a,b\n1,2\n3,4,5\n")
    assert sources.find_bad_csv_line(pafs.LocalFileSystem(), str(tmp_path / "long.csv")).line == 3


def test_the_bad_line_finder_finds_a_value_of_the_wrong_type(tmp_path):
    path = tmp_path / "typed.csv"
    path.write_text("a,b\n1,2\n3,4\nn/a,5\n")
    bad = sources.find_bad_csv_line(pafs.LocalFileSystem(), str(path), ",", (0, "int64", "n/a"))
    assert bad.line == 4 and "'a' holds 'n/a' where the rows before it hold int64" in bad.problem
    assert bad.excerpt == "n/a,5"


def test_a_failed_csv_read_becomes_one_error_naming_file_and_line(tmp_path):
    _touch(tmp_path, "d/a.csv")
    (tmp_path / "d/a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "d/b.csv").write_text("x,y\n1,2\n3\n")
    source = SourceConfig(path=str(tmp_path / "d"), format=SourceFormat.csv)
    files = sources.resolve(source)
    # What Ray raises, several tracebacks deep; the file is named only somewhere in the middle.
    raised = ValueError("Traceback (most recent call last):\n  File ...\n" * 20 +
                        f"ValueError: Failed to read CSV file: {tmp_path}/d/b.csv. Please check ...")
    err = sources.read_error(source, files, raised)
    assert str(err) == (f"data.source.path: failed while reading {tmp_path}/d/b.csv as csv: "
                        "line 3: 1 field(s) where the header has 2: '3'")
    # Without a file name in the error, every file is scanned.
    assert "b.csv as csv: line 3" in str(sources.read_error(source, files, RuntimeError("boom")))


def test_a_value_of_another_type_far_down_a_csv_is_found_by_reading_it_again(tmp_path):
    # pyarrow infers types from the first block (1 MiB); Ray's error does not carry pyarrow's reason.
    rows = "".join(f"{i},{i % 7}\n" for i in range(150_000))
    (tmp_path / "big.csv").write_text(f"id,calls\n{rows}150000,lots\n")
    source = SourceConfig(path=str(tmp_path / "big.csv"), format=SourceFormat.csv)
    err = sources.read_error(source, sources.resolve(source), ValueError(f"Failed to read CSV file: {tmp_path}/big.csv."))
    assert str(err) == (f"data.source.path: failed while reading {tmp_path}/big.csv as csv: line 150002: column "
                        "'calls' holds 'lots' where the rows before it hold int64 (if it means missing, add it to "
                        "data.source.null_values): '150000,lots'")
    # The same marker declared a null value reads.
    assert sources._csv_problem(pafs.LocalFileSystem(), str(tmp_path / "big.csv"),
                                SourceConfig(path="x", format=SourceFormat.csv, null_values=["lots"])) is None


def test_a_parquet_failure_names_the_file_whose_footer_does_not_read(tmp_path):
    _touch(tmp_path, "d/a.parquet")
    pd.DataFrame({"x": [1, 2]}).to_parquet(tmp_path / "d/a.parquet")
    (tmp_path / "d/README.txt").write_text("hello\n")
    source = SourceConfig(path=str(tmp_path / "d"))
    err = sources.read_error(source, sources.resolve(source), OSError("Parquet file size is 6 bytes, ..."))
    assert str(err).startswith(f"data.source.path: failed while reading {tmp_path}/d/README.txt as parquet: ")


def test_an_unexplained_failure_keeps_the_last_line_of_the_traceback(tmp_path):
    # Every footer reads: the error is about the files together (here, types that do not merge).
    for name, values in (("a", [1, 2]), ("b", ["x", "y"])):
        pd.DataFrame({"x": values}).to_parquet(tmp_path / f"{name}.parquet")
    source = SourceConfig(path=f"{tmp_path}/*.parquet")
    raised = RuntimeError("Traceback (most recent call last):\n  File x\n    y()\n"
                          "pyarrow.lib.ArrowTypeError: Unable to merge: Field x has incompatible types: int64 vs string\n")
    assert str(sources.read_error(source, sources.resolve(source), raised)) == (
        f"data.source.path: failed while reading {tmp_path}/*.parquet as parquet: "
        "pyarrow.lib.ArrowTypeError: Unable to merge: Field x has incompatible types: int64 vs string")


# ---- categoricals however they are stored ------------------------------------------------------------

@pytest.mark.parametrize("values", [
    pd.Series([3, 1, 5]),  # integer-coded
    pd.Series([3.0, 1.0, 5.0, np.nan]),  # integers read from a CSV column with nulls
    pd.Series(pd.Categorical([3, 1, 5, None])),  # a Parquet dictionary column of integers
    pd.Series(pd.Categorical([3.0, 1.0, 5.0])),
    pd.Series(pd.Categorical(["3", "1", "5"])),
    pd.Series(["3", "1", "5", None]),
])
def test_category_strings_read_an_integer_code_the_same_however_stored(values):
    got = category_strings(values)
    assert list(got.dropna()) == ["3", "1", "5"] and str(got.dtype) == "string"
    assert got.isna().sum() == values.isna().sum()


def test_category_strings_of_a_categorical_keep_index_and_nulls():
    values = pd.Series(pd.Categorical(["b", None, "a"], categories=["a", "b", "c"]), index=[7, 8, 9])
    got = category_strings(values)
    assert list(got.index) == [7, 8, 9] and got[7] == "b" and pd.isna(got[8]) and got[9] == "a"
