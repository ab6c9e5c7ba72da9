"""Reading a list of Parquet files as a Ray Dataset through Ray Data's public ``Datasource`` API.

Why not ``ray.data.read_parquet``: Ray 2.60 has two Parquet readers and neither fits a pipeline that
reads a known list of files once, whole, in a few blocks.
- The default (V2) reader drops every path whose name does not end in one of ``file_extensions`` (even
  one passed explicitly: Spark's ``part-0000`` files, ``*.pq``), lists the files in a task of its own
  (0.8 s on a 2-core machine) and read all 16 files of the 2,000,000-row benchmark set in one task,
  whatever ``override_num_blocks`` said: one CPU busy.
- The V1 reader (``DataContext.use_datasource_v2 = False``, a private switch) groups files as asked,
  but first samples two files in Ray tasks of their own to estimate the in-memory size (~80 ms before
  the first read task can start, on 1 CPU), then decodes each file batch by batch on one thread.
Here the driver reads only the first file's footer (for the schema), each read task reads its group
of files with pyarrow's own ``read_table`` (a file's columns decoded by pyarrow's CPU pool: in a Ray
worker that pool has as many threads as ``OMP_NUM_THREADS``, which Ray sets to the task's CPUs, so one
for a 1-CPU task) and returns them as one block. On the benchmark set, measured in one process: 0.056 s
for a group of 4 files (125,000 rows each) with 2 threads, 0.1 s with 1, 0.095 s batch by batch (2
threads); and no sampling;
a job's first prepare of 60,000 rows (a fresh driver on a running cluster, as every retrain is) took
1.57 s instead of 1.83 s (medians of 4 alternating runs).

What it keeps from Ray's readers: the file list is exactly the one resolved by ``foundry.data.sources``
(which also turns a failed read into an error naming the file), and a column stored as Ray's pickled-
object extension type is refused before anything reads its values (unpickling would run code).
"""

from __future__ import annotations

import functools

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.data import Datasource, ReadTask
from ray.data._internal.object_extensions.arrow import raise_on_pickle_object_columns
from ray.data.block import BlockMetadata

# Parquet decodes to about this many times its size on disk (the benchmark set: 5.6x): only Ray's
# estimate for sizing its object-store budget before the first block exists.
IN_MEMORY_PER_DISK_BYTE = 6


def file_groups(paths: list[str], sizes: list[int], groups: int) -> list[list[int]]:
    """``paths`` split into at most ``groups`` runs of neighbouring files of about equal bytes on disk.

    Neighbours, not a balanced bin packing: a block keeps the files' order, so the staged data's order
    (and any order-dependent result a user looks at) does not depend on file sizes."""
    groups = max(1, min(groups, len(paths)))
    weights = sizes if sum(sizes) else [1] * len(paths)  # no sizes known: by file count
    total = sum(weights)
    out: list[list[int]] = [[]]
    done = 0
    for i, weight in enumerate(weights):
        remaining_files = len(paths) - i
        remaining_groups = groups - len(out) + 1
        boundary = total * len(out) / groups
        if out[-1] and len(out) < groups and (done + weight / 2 > boundary or remaining_files < remaining_groups):
            out.append([])
        out[-1].append(i)
        done += weight
    return out


def read_group(filesystem: pafs.FileSystem, paths: list[str]) -> pa.Table:
    """One read task's files as one table, read with pyarrow's threads; files whose types differ
    (an int column in one file, float in the next) are promoted to a common type."""
    tables = []
    for path in paths:
        try:
            table = pq.read_table(path, filesystem=filesystem, use_threads=True)
        except (pa.ArrowException, OSError) as exc:  # pyarrow's message rarely names the file
            raise OSError(f"failed to read Parquet file {path}: {exc}") from exc
        raise_on_pickle_object_columns(table)
        tables.append(table)
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise OSError(f"Parquet files {paths[0]} .. {paths[-1]} hold columns of types that do not combine: "
                      f"{exc}") from exc


class ParquetFilesDatasource(Datasource):
    """Exactly these Parquet files, in ``num_blocks`` read tasks of neighbouring files."""

    def __init__(self, filesystem: pafs.FileSystem, paths: list[str], sizes: list[int], num_blocks: int):
        super().__init__()
        self._filesystem, self._paths, self._sizes, self._num_blocks = filesystem, paths, sizes, num_blocks
        self._schema = pq.read_schema(paths[0], filesystem=filesystem)

    def get_name(self) -> str:
        return "Parquet"  # Ray names the operator (and its tasks in the dashboard) "ReadParquet"

    def estimate_inmemory_data_size(self) -> int:
        return sum(self._sizes) * IN_MEMORY_PER_DISK_BYTE

    def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list:
        filesystem, tasks = self._filesystem, []
        for group in file_groups(self._paths, self._sizes, self._num_blocks):
            paths = [self._paths[i] for i in group]
            metadata = BlockMetadata(num_rows=None, exec_stats=None, input_files=tuple(paths),
                                     size_bytes=sum(self._sizes[i] for i in group) * IN_MEMORY_PER_DISK_BYTE)
            tasks.append(ReadTask(functools.partial(_read_task, filesystem, paths), metadata,
                                  schema=self._schema, per_task_row_limit=per_task_row_limit))
        return tasks


def _read_task(filesystem: pafs.FileSystem, paths: list[str]) -> list[pa.Table]:
    return [read_group(filesystem, paths)]


def read_parquet_files(filesystem: pafs.FileSystem, paths: list[str], sizes: list[int], num_blocks: int):
    """A lazy Ray Dataset over ``paths`` (with their ``sizes`` on disk) in ``num_blocks`` blocks."""
    import ray.data

    datasource = ParquetFilesDatasource(filesystem, paths, sizes, num_blocks)
    return ray.data.read_datasource(datasource, override_num_blocks=num_blocks)
