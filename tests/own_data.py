"""A data set that is not the bundled churn table: what a user brings, for the "your own data" tests.

``parcels``: will a parcel arrive on time, late or very late (multi-class)? Other column names and
types than churn's: an integer id key (``parcel_id``), an integer-coded categorical (``hub`` 1..6),
a string categorical (``carrier``), a nullable numeric (``weight_kg``), written as CSV, with exact
duplicate rows (a parcel scanned twice). ``shifted=True`` is a concept shift: the carriers' and
hubs' delays change (a strike at one carrier, a new sorting machine at another hub), so the model's
errors rise while its inputs look the same.

Run ``python -m tests.own_data DIR`` to write ``DIR/parcels.csv`` (baseline) and
``DIR/parcels_shifted.csv`` plus ``DIR/conf/data/parcels.yaml``: the README's "Bring your own data"
walk-through uses it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = ["on_time", "late", "very_late"]
CARRIERS = ["swift", "atlas", "nordpost", "kite"]
HUBS = [1, 2, 3, 4, 5, 6]
LABEL = "delivery"
KEY = "parcel_id"

DATA_YAML = """\
# A user's own data set: parcels.csv, written by `python -m tests.own_data DIR`.
name: parcels
task: multiclass
label: delivery
classes: [on_time, late, very_late]
source:
  path: {path}
  format: csv
split:
  train: 0.6
  val: 0.2
  test: 0.2
  seed: 7
  key: parcel_id
validation:
  min_rows: 1000
  max_null_fraction: 0.1
reference_rows: 2000
features:
  - {{name: distance_km, type: numeric, min: 0, max: 5000}}
  - {{name: weight_kg, type: numeric, min: 0, max: 500, nullable: true}}
  - {{name: items, type: numeric, min: 1, max: 50}}
  - {{name: hub, type: categorical, values: ["1", "2", "3", "4", "5", "6"]}}
  - {{name: carrier, type: categorical, values: [swift, atlas, nordpost, kite], on_unknown: allow}}
"""


def parcels(rows: int, seed: int, shifted: bool = False, duplicates: float = 0.0, first_id: int = 1_000_000
            ) -> pd.DataFrame:
    """``rows`` parcels (plus ``duplicates`` x rows exact copies, shuffled in), deterministic in the arguments."""
    rng = np.random.default_rng(seed)
    distance = rng.gamma(2.0, 150.0, rows).round(1)
    weight = rng.lognormal(1.0, 0.7, rows).round(2)
    weight[rng.random(rows) < 0.04] = np.nan
    items = rng.integers(1, 12, rows)
    hub = rng.choice(HUBS, rows)
    carrier = rng.choice(CARRIERS, rows, p=[0.3, 0.3, 0.25, 0.15])
    carrier_delay = {"swift": -1.2, "atlas": 0.0, "nordpost": 0.6, "kite": 1.2}
    hub_delay = {1: -0.6, 2: 0.0, 3: 0.4, 4: -0.3, 5: 0.9, 6: 0.2}
    if shifted:  # a strike at swift, a new sorting machine at hub 5, kite hires
        carrier_delay = {"swift": 2.2, "atlas": 0.0, "nordpost": 0.6, "kite": -1.5}
        hub_delay = {1: -0.6, 2: 0.0, 3: 0.4, 4: -0.3, 5: -1.2, 6: 0.2}
    score = (0.003 * distance + 0.12 * np.nan_to_num(weight, nan=3.0) + 0.05 * items
             + pd.Series(carrier).map(carrier_delay).to_numpy() + pd.Series(hub).map(hub_delay).to_numpy()
             + rng.normal(0, 0.45, rows))
    label = np.where(score < 1.1, "on_time", np.where(score < 2.1, "late", "very_late"))
    df = pd.DataFrame({KEY: np.arange(first_id, first_id + rows, dtype=np.int64), "distance_km": distance,
                       "weight_kg": weight, "items": items, "hub": hub, "carrier": carrier, LABEL: label})
    if duplicates:
        copies = df.iloc[rng.choice(rows, int(rows * duplicates), replace=False)]
        df = pd.concat([df, copies]).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return df


def write_example(folder: Path, rows: int = 22_000) -> Path:
    """The baseline CSV, a shifted CSV to send as live traffic, and the data yaml in ``folder/conf``."""
    folder.mkdir(parents=True, exist_ok=True)
    parcels(rows, seed=0, duplicates=0.2).to_csv(folder / "parcels.csv", index=False)
    parcels(5000, seed=1, shifted=True, first_id=5_000_000).to_csv(folder / "parcels_shifted.csv", index=False)
    (folder / "conf" / "data").mkdir(parents=True, exist_ok=True)
    (folder / "conf" / "data" / "parcels.yaml").write_text(DATA_YAML.format(path=folder.resolve() / "parcels.csv"))
    return folder


if __name__ == "__main__":
    out = write_example(Path(sys.argv[1] if len(sys.argv) > 1 else "parcels-example"))
    print(f"wrote {out}/parcels.csv, {out}/parcels_shifted.csv and {out}/conf/data/parcels.yaml")
