"""From a configured source to training-ready Ray Datasets, reading the source once and without
collecting the data on the driver.

1. stage (whole pyarrow blocks, no pandas; for a materialized Parquet source one plain Ray task per
   group of files, foundry/data/block_tasks.py; otherwise one streaming ``map_batches`` over Ray Data's
   read): each block's split, its values in the form the encoder needs, and its profile (schema
   problem counts, split sizes, fingerprint, the preprocessor's partial statistics, its lowest
   reference draws): foundry/data/blocks.py. With ``data.materialize`` the staged blocks are kept in
   the object store; the driver reads only the one profile cell of each.
2. merge on the driver: the validation report, the fitted preprocessor, the reference sample.
3. encode train and val from the staged blocks (array arithmetic only): with ``data.materialize`` one
   Ray task per staged block yields both splits' blocks (``_encode_materialized``); without it, lazy
   ``map_batches`` that re-read and re-stage the source each epoch.
Nothing is trained, and so nothing is registered, unless the merged profile has no fatal problem.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from foundry.config import DataConfig, SourceConfig, SourceFormat
from foundry.data import block_tasks, blocks, schema, sources, split
from foundry.data import preprocessor as prep
from foundry.data.executor_start import use_reserved_cpus_promptly
from foundry.errors import DataValidationError

log = logging.getLogger(__name__)

ENCODED = ("train", "val")


@dataclass
class PreparedData:
    train: object  # ray.data.Dataset of {"x_num", "x_cat", "y"}
    val: object
    test_raw: object  # ray.data.Dataset of raw test rows: evaluated through the Predictor, like live traffic
    preprocessor: prep.Preprocessor
    report: schema.ValidationReport
    split_rows: dict[str, int]
    fingerprint: str
    reference: pd.DataFrame
    source_path: str | list[str]  # as configured (a file, folder, glob or a list of them), normalized


def read_source(source: SourceConfig) -> tuple[object, sources.SourceFiles]:
    """A lazy Ray Dataset over the configured files (foundry/data/sources.py), and those files, so
    that a read failing later can name the file (and, for CSV, the line)."""
    files = sources.resolve(source)
    return sources.open_dataset(source, files), files


def _pyarrow_blocks(ds, fn, **kwargs):
    """``fn`` on every whole block as a pyarrow Table: no pandas conversion, no re-batching."""
    return ds.map_batches(fn, fn_kwargs=kwargs, batch_format="pyarrow", batch_size=None, zero_copy_batch=True)


def _staged_tables(staged) -> list:
    """The materialized staged blocks, mapped (not copied) from the object store into the driver."""
    import ray

    return ray.get(staged.to_arrow_refs())


def _profiles(staged, materialized: bool) -> list[dict]:
    if materialized:
        return [p for table in _staged_tables(staged) for p in blocks.block_profiles(table)]
    return blocks.profiles_of_cells([row[blocks.PROFILE] for row in
                                     _pyarrow_blocks(staged, blocks.profile_rows).take_all()])


def _encode_both(staged, fitted: prep.Preprocessor) -> tuple:
    """One staged block's train and val rows encoded, and each one's Ray Data block metadata."""
    tables = [blocks.encode_arrow_block(staged, which, fitted) for which in ENCODED]
    return (*tables, *[block_tasks.metadata(t) for t in tables])


def _stage_files(filesystem, paths: list[str], data: DataConfig) -> tuple:
    """One group of Parquet files read and staged, and the staged block's Ray Data metadata."""
    from foundry.data.parquet_files import read_group

    staged = blocks.stage_block(read_group(filesystem, paths), data)
    return staged, block_tasks.metadata(staged)


def _stage_materialized(ds, data: DataConfig, files: sources.SourceFiles):
    """The staged blocks, kept in the object store: for Parquet, one plain Ray task per group of files
    (foundry/data/block_tasks.py says why; the groups are those Ray Data would read, parquet_files.py);
    for CSV, Ray Data's read and ``map_batches``, materialized."""
    if data.source.format is not SourceFormat.parquet:
        return _pyarrow_blocks(ds, blocks.stage_block, data=data).materialize()
    import ray

    from foundry.data.parquet_files import file_groups

    groups = file_groups(files.paths, files.sizes_or_zeros, sources.num_blocks(files, data.source))
    task = ray.remote(num_returns=2, scheduling_strategy="SPREAD")(_stage_files)  # as Ray Data spreads reads
    data_ref = ray.put(data)
    results = [task.remote(files.filesystem, [files.paths[i] for i in group], data_ref) for group in groups]
    return block_tasks.materialized([r[0] for r in results],
                                    block_tasks.gather([r[1] for r in results], "staged"), "ReadParquet->stage_block")


def _encode_materialized(staged, fitted: prep.Preprocessor) -> dict:
    """The encoded train and val splits as materialized Datasets, from one task per staged block.

    Two ``map_batches(...).materialize()`` (one per split) cost two executions and a task per block
    each, ~20 ms apiece here: half the time of the whole encoding. One plain Ray task per staged block
    encodes both splits, and its blocks become Datasets as ``ray.data.from_arrow_refs`` makes them,
    with the metadata the task computed (``from_arrow_refs`` would start a task per block for it).
    """
    import ray

    task = ray.remote(num_returns=2 * len(ENCODED))(_encode_both)
    fitted_ref = ray.put(fitted)
    results = [task.remote(block, fitted_ref) for block in staged.to_arrow_refs()]
    return {which: block_tasks.materialized([r[i] for r in results],
                                            block_tasks.gather([r[len(ENCODED) + i] for r in results],
                                                               f"encoded ({which})"), "FromArrow")
            for i, which in enumerate(ENCODED)}


def validate(data: DataConfig):
    """Check the source against the schema; returns (staged dataset, merged profile, report) or raises.

    The staged dataset is materialized when ``data.materialize``: the one read of the source."""
    return _validate(data)[1:]


def _validate(data: DataConfig):
    use_reserved_cpus_promptly()
    ds, files = read_source(data.source)
    try:
        arrow_schema = ds.schema(fetch_if_missing=True)
    except Exception as exc:
        raise sources.read_error(data.source, files, exc) from exc
    if arrow_schema is None:
        report = schema.ValidationReport(rows=0, problems=[schema.Problem("*", "empty data set", 0)])
        raise DataValidationError(report)
    column_problems = schema.check_columns(arrow_schema.base_schema if hasattr(arrow_schema, "base_schema")
                                           else arrow_schema, data)
    if column_problems:
        raise DataValidationError(schema.ValidationReport(rows=0, problems=column_problems))
    log.info("profiling %d file(s) of %s", len(files.paths), sources.describe(data.source.path))
    try:
        staged = (_stage_materialized(ds, data, files) if data.materialize
                  else _pyarrow_blocks(ds, blocks.stage_block, data=data))
        merged = blocks.merge_profiles(_profiles(staged, data.materialize))
    except Exception as exc:
        raise sources.read_error(data.source, files, exc) from exc
    report = schema.build_report(merged["schema"], data, [])
    if not report.ok:
        raise DataValidationError(report)
    return ds, staged, merged, report


def prepare(data: DataConfig, fitted: prep.Preprocessor | None = None) -> PreparedData:
    """Validate, split, fit the preprocessor on the training split (or use ``fitted``: a warm start keeps
    the starting version's encoding, so its weights mean the same thing), and set up the encoded datasets."""
    ds, staged, merged, report = _validate(data)
    for warning in report.warnings:
        log.warning("data: %s: %s (%d rows) %s", warning.column, warning.problem, warning.rows, warning.detail)
    split_rows = merged["split_rows"]
    for name, n in split_rows.items():
        if n == 0:
            raise DataValidationError(schema.ValidationReport(
                rows=report.rows, problems=[schema.Problem("*", f"the {name} split is empty", 0,
                                                           "more rows or other data.split fractions needed")]))
    if fitted is None:
        fitted = prep.fit(merged["stats"], data)
    reference = blocks.reference_sample(merged["reference"], data)
    if len(reference) < data.reference_rows:
        # Normal for small data sets and retrains on recent rows: said, not warned about.
        log.info("drift reference sample: %d rows (all of the held-out %s splits; data.reference_rows=%d)",
                 len(reference), "/".join(split.REFERENCE_SPLITS), data.reference_rows)
    if data.materialize:
        encoded = _encode_materialized(staged, fitted)
    else:
        encoded = {which: _pyarrow_blocks(staged, blocks.encode_arrow_block, which=which, fitted=fitted)
                   for which in ENCODED}
    test_raw = _pyarrow_blocks(ds, blocks.split_rows_of, data=data, which="test")  # lazy: read when evaluated
    return PreparedData(
        train=encoded["train"],
        val=encoded["val"],
        test_raw=test_raw,
        preprocessor=fitted,
        report=report,
        split_rows=split_rows,
        fingerprint=merged["fingerprint"],
        reference=reference,
        source_path=sources.normalized(data.source.path),
    )
