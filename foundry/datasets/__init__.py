"""Bundled synthetic data sets, generated on first use so the platform runs with nothing to download.

The generators are deterministic in (scenario, rows, seed), so a data set path that encodes those
three values always holds the same bytes, whichever process or machine happened to write it first.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from foundry import storage
from foundry.data import sources
from foundry.datasets import churn
from foundry.errors import ConfigError

GENERATORS: dict[str, tuple[Callable[[str, int, int], pd.DataFrame], tuple[str, ...]]] = {
    "churn": (churn.generate, churn.SCENARIOS),
}
SCENARIOS = churn.SCENARIOS

_KEY = "data.source.synthetic"


def generate(generator: str, scenario: str, rows: int, seed: int) -> pd.DataFrame:
    """Validate the arguments here, so a typo in a config fails with the key to fix, not a traceback."""
    if generator not in GENERATORS:
        raise ConfigError(f"{_KEY}.generator: unknown generator {generator!r} (known: {', '.join(GENERATORS)})")
    fn, scenarios = GENERATORS[generator]
    if scenario not in scenarios:
        raise ConfigError(f"{_KEY}.scenario: unknown {generator} scenario {scenario!r} "
                          f"(known: {', '.join(scenarios)})")
    if rows < 1:
        raise ConfigError(f"{_KEY}.rows: must be >= 1, got {rows}")
    if seed < 0:
        raise ConfigError(f"{_KEY}.seed: must be >= 0, got {seed}")
    return fn(scenario, rows, seed)


def to_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    fmt = getattr(fmt, "value", fmt)
    if fmt == "parquet":
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
        return buf.getvalue()
    if fmt == "csv":
        return df.to_csv(index=False).encode()
    raise ConfigError(f"data.source.format: unknown format {fmt!r} (known: parquet, csv)")


def ensure_source(source_cfg) -> str:
    """Make ``source_cfg.path`` exist, generating it once; the normalized path is returned either way
    (for a list of entries, all of them in one line).

    An existing file is never rewritten (it may be a user's own data, or one a running job reads).
    Two processes racing on a missing file both write identical bytes, each atomically, so either wins.
    Only a single file can be generated: a glob or a list of entries names the user's own files.
    """
    synthetic = source_cfg.synthetic
    if synthetic is None or not sources.is_single_file(source_cfg.path):
        return sources.describe(source_cfg.path)
    path = storage.normalize(source_cfg.path)
    fs, inner = storage.resolve(path)
    if storage.exists(fs, inner):
        return path
    df = generate(synthetic.generator, synthetic.scenario, synthetic.rows, synthetic.seed)
    storage.write_bytes_atomic(fs, inner, to_bytes(df, source_cfg.format))
    return path
