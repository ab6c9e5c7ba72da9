"""From a configured source to training-ready Ray Datasets, without collecting the data on the driver.

Passes over the source (all streaming ``map_batches``):
1. profile: schema-problem counts for every row, split sizes, the data fingerprint, and the
   preprocessor's sufficient statistics for training rows, merged on the driver as small dicts;
2. reference draw: a fixed-size sample of held-out (val/test) rows for drift detection;
3. encode (lazily, while Ray Train consumes it): split selection + the fitted preprocessor.
Nothing is trained, and so nothing is registered, unless pass 1 finds no fatal problem.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from foundry.config import DataConfig, SourceConfig
from foundry.data import preprocessor as prep
from foundry.data import schema, sources, split
from foundry.errors import DataValidationError

log = logging.getLogger(__name__)

PROFILE_BATCH_ROWS = 8192
ENCODE_BATCH_ROWS = 4096
DRAW_COLUMN = "__draw"


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


def _profile(df: pd.DataFrame, data: DataConfig) -> dict:
    splits = split.assign(df, data)
    train_rows = df[splits == "train"]
    content = list(dict.fromkeys(split.key_columns(data) + [f.name for f in data.features] + [data.label]))
    hashed = pd.util.hash_pandas_object(df[content], index=False).to_numpy(np.uint64)
    profile = {
        "schema": schema.profile_batch(df, data),
        "split_rows": {s: int((splits == s).sum()) for s in split.SPLITS},
        # Order-independent content hash: a sum of row hashes (mod 2**64) does not depend on block order.
        "fingerprint": int(hashed.sum(dtype=np.uint64)),
        "stats": prep.partial_stats(train_rows, data),
    }
    return {"profile": np.array([json.dumps(profile)], dtype=object)}


def _merge_profiles(rows: list[dict]) -> dict:
    profiles = [json.loads(r["profile"]) for r in rows]
    fingerprint = 0
    split_rows = dict.fromkeys(split.SPLITS, 0)
    for p in profiles:
        fingerprint = (fingerprint + p["fingerprint"]) % 2**64
        for k, v in p["split_rows"].items():
            split_rows[k] += v
    return {
        "schema": schema.merge_profiles([p["schema"] for p in profiles]),
        "split_rows": split_rows,
        "fingerprint": f"{fingerprint:016x}",
        "stats": [p["stats"] for p in profiles],
    }


def _reference_rows(df: pd.DataFrame, data: DataConfig, fraction: float) -> pd.DataFrame:
    draw = split.reference_draw(df, data)
    keep = split.in_reference_pool(split.assign(df, data)) & (draw < fraction)
    out = df.loc[keep, [f.name for f in data.features] + [data.label]]
    out[DRAW_COLUMN] = draw[keep]
    return out


def _encode_split(df: pd.DataFrame, data: DataConfig, which: str, fitted: prep.Preprocessor) -> dict:
    rows = df[split.assign(df, data) == which]
    encoded = fitted.transform_with_label(rows)
    # Ray Data tensor columns cannot have a zero-width axis; the model treats a missing key as "none".
    return {k: v for k, v in encoded.items() if v.ndim == 1 or v.shape[1] > 0}


def _select_split(df: pd.DataFrame, data: DataConfig, which: str) -> pd.DataFrame:
    return df[split.assign(df, data) == which].reset_index(drop=True)


def validate(data: DataConfig):
    """Check the source against the schema; returns (dataset, merged profile, report) or raises."""
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
        rows = ds.map_batches(partial(_profile, data=data), batch_format="pandas",
                              batch_size=PROFILE_BATCH_ROWS).take_all()
    except Exception as exc:
        raise sources.read_error(data.source, files, exc) from exc
    merged = _merge_profiles(rows)
    report = schema.build_report(merged["schema"], data, [])
    if not report.ok:
        raise DataValidationError(report)
    return ds, merged, report


def prepare(data: DataConfig, fitted: prep.Preprocessor | None = None) -> PreparedData:
    """Validate, split, fit the preprocessor on the training split (or use ``fitted``: a warm start keeps
    the starting version's encoding, so its weights mean the same thing), and set up the encoded datasets."""
    ds, merged, report = validate(data)
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
    pool_rows = sum(split_rows[name] for name in split.REFERENCE_SPLITS)
    fraction = min(1.0, 1.2 * data.reference_rows / pool_rows)
    reference = pd.concat(
        list(ds.map_batches(partial(_reference_rows, data=data, fraction=fraction), batch_format="pandas",
                            batch_size=PROFILE_BATCH_ROWS).iter_batches(batch_format="pandas")) or [pd.DataFrame()],
        ignore_index=True,
    )
    # Sorting by the draw makes the sample independent of block order: the same rows on every run.
    if len(reference):
        reference = (reference.sort_values(DRAW_COLUMN).head(data.reference_rows)
                     .drop(columns=DRAW_COLUMN).reset_index(drop=True))
    if len(reference) < data.reference_rows:
        # Normal for small data sets and retrains on recent rows: said, not warned about.
        log.info("drift reference sample: %d rows (all of the held-out %s splits; data.reference_rows=%d)",
                 len(reference), "/".join(split.REFERENCE_SPLITS), data.reference_rows)
    encoded = {which: ds.map_batches(partial(_encode_split, data=data, which=which, fitted=fitted),
                                     batch_format="pandas", batch_size=ENCODE_BATCH_ROWS)
               for which in ("train", "val")}
    if data.materialize:
        encoded = {which: d.materialize() for which, d in encoded.items()}
    test_raw = ds.map_batches(partial(_select_split, data=data, which="test"), batch_format="pandas",
                              batch_size=ENCODE_BATCH_ROWS)
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
