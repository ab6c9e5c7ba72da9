"""The pipeline's work on one Arrow block: everything one read of the source has to yield.

Why one function does it all: reading, converting and hashing a block cost far more than anything
computed from it, and the pipeline used to read and convert the source four times (profile,
reference draw, encode train, encode val), hashing the split key each time. Now ``stage_block``
(run once per block inside Ray Data's read tasks, on ``pyarrow`` batches: no pandas conversion)
returns the block *staged*: one byte of split per row, numeric features as float64, categorical
features and a classification label as dictionary codes; and, carried in one cell of the block
(``PROFILE``: the first row's, so it survives any re-slicing into blocks), the block's profile:
schema-problem counts, split sizes, fingerprint, the preprocessor's partial statistics and the
block's reference candidates. The staged blocks stay in the object store; after the driver has
merged the profiles and fitted the preprocessor, ``encode_block`` turns them into model inputs with
array arithmetic only.

The reference sample is the ``reference_rows`` held-out rows with the lowest draws
(``split.draws``). A row's draw does not depend on its block, so each block keeping its own
``reference_rows`` lowest is enough: the driver's merge of those is the global lowest, whatever the
block order or sizes.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from foundry.config import DataConfig, FeatureType, Task
from foundry.data import columns, schema, split
from foundry.data import preprocessor as prep

SPLIT = "__split"
PROFILE = "__profile"
DRAW = "__draw"


def _numeric_stats(values: np.ndarray) -> list:
    values = values[np.isfinite(values)]
    return [int(values.size), float(values.sum()), float(np.square(values).sum())]


def _candidates(batch: pa.Table, data: DataConfig, codes: np.ndarray, content: np.ndarray) -> pa.Table | None:
    """This block's ``reference_rows`` held-out rows with the lowest draws, raw, with their draw."""
    pool = np.flatnonzero(np.isin(codes, split.POOL_CODES))
    k = data.reference_rows
    if not len(pool) or k <= 0:
        return None
    draw = split.draws(content[pool], data.split.seed)
    if len(pool) > k:
        keep = np.argpartition(draw, k - 1)[:k]
        pool, draw = pool[keep], draw[keep]
    out = batch.select([f.name for f in data.features] + [data.label]).take(pa.array(pool))
    return out.append_column(DRAW, pa.array(draw))


def stage_block(batch: pa.Table, data: DataConfig) -> pa.Table:
    """One source block in, the staged block out (see the module docstring); never raises for bad
    values, which the profile counts so that validation can name them all."""
    n = batch.num_rows
    content_names = split.content_columns(data)
    hashes = {c: columns.column_hash(batch[c]) for c in content_names}
    codes = split.split_codes(columns.combine_hashes([hashes[c] for c in split.key_columns(data)]), data)
    content = columns.combine_hashes([hashes[c] for c in content_names])
    train = codes == split.SPLITS.index("train")
    profile = {"rows": n, "features": {}, "label": None}
    stats: dict = {"numeric": {}, "categorical": {}, "label": None}
    out = {SPLIT: pa.array(codes)}
    for f in data.features:
        if f.type is FeatureType.numeric:
            num = columns.numeric_column(batch[f.name], schema.MAX_EXAMPLES)
            profile["features"][f.name] = schema.numeric_profile(num.values, num.nulls, num.not_numeric,
                                                                 num.examples, f)
            stats["numeric"][f.name] = _numeric_stats(num.values[train])
            out[f.name] = pa.array(num.values)
        else:
            cat = columns.category_column(batch[f.name])
            profile["features"][f.name] = schema.categorical_profile(int((cat.codes < 0).sum()), cat.counts(), f)
            stats["categorical"][f.name] = cat.counts(train)
            out[f.name] = cat.as_arrow()
    if data.task is Task.regression:
        num = columns.numeric_column(batch[data.label], schema.MAX_EXAMPLES)
        present = ~num.nulls
        profile["label"] = schema.label_profile(int(num.nulls.sum()), None,
                                                int((present & ~np.isfinite(num.values)).sum()), data)
        stats["label"] = _numeric_stats(num.values[train])
        out[data.label] = pa.array(num.values)
    else:
        cat = columns.category_column(batch[data.label])
        profile["label"] = schema.label_profile(int((cat.codes < 0).sum()), cat.counts(), 0, data)
        out[data.label] = cat.as_arrow()
    block = {
        "schema": profile,
        "split_rows": {s: int((codes == i).sum()) for i, s in enumerate(split.SPLITS)},
        # Order-independent content hash: a sum of row hashes (mod 2**64) does not depend on block order.
        "fingerprint": int(content.sum(dtype=np.uint64)),
        "stats": stats,
        "reference": _candidates(batch, data, codes, content),
    }
    blob = pa.array([pack_profile(block)], pa.binary()) if n else pa.array([], pa.binary())
    out[PROFILE] = pa.concat_arrays([blob, pa.nulls(max(n - 1, 0), pa.binary())])
    return pa.table(out)


def block_profiles(staged: pa.Table) -> list[dict]:
    """The profiles a staged block carries (one; none for an empty block; several after a merge)."""
    return profiles_of_cells(pc.drop_null(staged[PROFILE]).to_pylist() if staged.num_rows else [])


def pack_profile(block: dict) -> bytes:
    """A block's profile as data, never a pickle (nothing Foundry reads deserializes to code): the
    counts and statistics as JSON (category keys are strings, floats round-trip exactly), then the
    reference candidates as an Arrow IPC stream. Layout: 8-byte little-endian JSON length, JSON, IPC."""
    head = json.dumps({k: v for k, v in block.items() if k != "reference"}).encode()
    tail = b""
    if block.get("reference") is not None:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, block["reference"].schema) as writer:
            writer.write_table(block["reference"])
        tail = sink.getvalue().to_pybytes()
    return len(head).to_bytes(8, "little") + head + tail


def unpack_profile(cell: bytes) -> dict:
    """``pack_profile``'s inverse."""
    size = int.from_bytes(cell[:8], "little")
    block = json.loads(cell[8:8 + size])
    tail = cell[8 + size:]
    block["reference"] = pa.ipc.open_stream(pa.py_buffer(tail)).read_all() if tail else None
    return block


def profiles_of_cells(cells: list[bytes]) -> list[dict]:
    """Profiles from their ``PROFILE`` cells, written by ``stage_block`` (``pack_profile``)."""
    return [unpack_profile(c) for c in cells]


def profile_rows(staged: pa.Table) -> pa.Table:
    """Only the profile cells of a staged block: what streaming validation sends to the driver."""
    return pa.table({PROFILE: pc.drop_null(staged[PROFILE])})


def merge_profiles(profiles: list[dict]) -> dict:
    """All blocks' profiles as one: counts summed, fingerprints added mod 2**64, partial statistics
    listed for ``preprocessor.fit``, reference candidates gathered."""
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
        "reference": [p["reference"] for p in profiles if p["reference"] is not None],
    }


def reference_sample(candidates: list[pa.Table], data: DataConfig) -> pd.DataFrame:
    """The ``data.reference_rows`` candidates with the lowest draws, lowest first, as raw rows."""
    names = [f.name for f in data.features] + [data.label]
    tables = [t for t in candidates if t.num_rows]
    if not tables:
        return pd.DataFrame(columns=names)
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # CSV blocks whose types were inferred differently
        frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
        frame = frame.iloc[np.argsort(frame[DRAW].to_numpy(), kind="stable")[:data.reference_rows]]
        return frame.drop(columns=DRAW).reset_index(drop=True)
    order = np.argsort(table[DRAW].to_numpy(), kind="stable")[:data.reference_rows]
    return table.take(pa.array(order)).drop_columns([DRAW]).to_pandas()


def _floats(col: pa.ChunkedArray) -> np.ndarray:
    return col.to_numpy() if col.num_chunks != 1 else col.chunk(0).to_numpy(zero_copy_only=False)


def encode_block(staged: pa.Table, which: str, fitted: prep.Preprocessor) -> dict[str, np.ndarray]:
    """The rows of split ``which`` as model inputs, equal to ``fitted.transform_with_label`` of the raw
    rows (tests/unit/test_block_columns.py checks it): ``x_num`` float32, ``x_cat`` int64, ``y``."""
    rows = staged[SPLIT].to_numpy() == split.SPLITS.index(which)
    n = int(rows.sum())
    width = len(fitted.numeric)
    x_num = np.empty((n, fitted.numeric_width), dtype="float32")
    indicator = width
    for j, enc in enumerate(fitted.numeric):
        raw = _floats(staged[enc.name])[rows]
        missing = ~np.isfinite(raw)
        x_num[:, j] = np.where(missing, 0.0, (raw - enc.mean) / enc.std)
        if enc.add_missing_indicator:
            x_num[:, indicator] = missing
            indicator += 1
    x_cat = np.empty((n, len(fitted.categorical)), dtype="int64")
    for j, enc in enumerate(fitted.categorical):
        cat = columns.staged_categories(staged[enc.name])
        x_cat[:, j] = cat.lookup(enc.categories)[cat.codes[rows]]
    out = {"x_num": x_num, "x_cat": x_cat, "y": _label(staged, rows, fitted)}
    # Ray Data tensor columns cannot have a zero-width axis; the model treats a missing key as "none".
    return {k: v for k, v in out.items() if v.ndim == 1 or v.shape[1] > 0}


def encode_arrow_block(staged: pa.Table, which: str, fitted: prep.Preprocessor) -> pa.Table:
    """``encode_block`` as the Arrow block Ray Data stores: built here because Ray's own conversion of a
    numpy batch infers the type of a 1-D column by looking at its values (0.15 s per 1.6M rows)."""
    from ray.data.extensions import ArrowTensorArray

    return pa.table({k: ArrowTensorArray.from_numpy(v) if v.ndim > 1 else pa.array(v)
                     for k, v in encode_block(staged, which, fitted).items()})


def _label(staged: pa.Table, rows: np.ndarray, fitted: prep.Preprocessor) -> np.ndarray:
    if fitted.task == Task.regression.value:
        return ((_floats(staged[fitted.label])[rows] - fitted.label_mean) / fitted.label_std).astype("float32")
    cat = columns.staged_categories(staged[fitted.label])
    codes = cat.lookup(fitted.classes, offset=0, missing=-1)[cat.codes[rows]]
    if (codes < 0).any():
        bad = [None if c < 0 else cat.categories[c] for c in cat.codes[rows][codes < 0][:3]]
        raise ValueError(f"label {fitted.label!r} has values outside the classes {fitted.classes}: {bad}")
    return codes.astype("float32" if fitted.task == Task.binary.value else "int64")


def split_rows_of(batch: pa.Table, data: DataConfig, which: str) -> pa.Table:
    """The raw rows of split ``which`` (the test split, evaluated later through the Predictor)."""
    codes = split.split_codes(columns.combine_hashes([columns.column_hash(batch[c])
                                                      for c in split.key_columns(data)]), data)
    return batch.filter(pa.array(codes == split.SPLITS.index(which)))
