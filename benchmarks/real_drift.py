"""A real data set with real drift over time, for ``heal_bench.py``'s ``real`` scenario.

    python -m benchmarks.real_drift OUTDIR [--label monthly|fixed]

ggplot2's Texas housing table as the ``plotnine`` wheel ships it (``plotnine/data/txhousing.csv``;
``pip install -e '.[bench]'``): 8,602 city-months of 46 Texas cities, 2000-2015, from the TAMU Real
Estate Center. Read from the wheel's files; plotnine itself (its plotting stack) is never imported.

Task (binary, data config ``benchmarks/conf/data/txhousing.yaml``): is this city-month's median sale
price above the threshold (``pricey``)? Features: ``city`` (categorical), ``month``, ``sales``,
``listings``, ``inventory`` (numeric, nullable). Not ``volume`` (sales x price: it leaks the label),
not ``year`` (the model must not see time). Rows without a median price are dropped; ``row_id`` (the
CSV row number) is the split key.

- ``train.parquet``: 2000-2006 (the first version's data) except every 5th row;
  ``baseline.parquet``: those every-5th rows (in-distribution rows the first version never saw);
- ``live.parquet``: 2009-2015 in time order except every 5th row: the labelled live traffic (and,
  with hindsight, the oracle's training set); ``holdout.parquet``: those every-5th rows, the
  held-out set of the new distribution that accuracy_before/after/oracle are measured on.

Two label rules:
- ``monthly`` (default): above *that month's* median over the cities. Balanced at every time; what
  drifts is which cities are dear (the 2011-2014 oil boom lifted Midland and Odessa, the crash hit
  others) and how sales, listings and inventory relate to price after the 2008 crash.
- ``fixed``: above one threshold, the median of the 2000-2006 medians (balanced at training time).
  Nominal prices rose ~40% from 2006 to 2015, so 2009-2015 is 88% positive: a severe label shift
  that a model without ``year`` cannot follow.

How much drift (this script's check: a logistic regression on the same features, one-hot city,
log numerics with missing indicators; the platform's MLP figures are in heal.json, ``real``):

| label | 2000-2006 held out | 2009-2015 held out | oracle (hindsight on 2009-2015) |
|---|---|---|---|
| monthly | 0.92 | 0.79 | 0.90 |
| fixed | 0.87 | 0.52 (all-positive: 0.89) | 0.93 |

The platform's first version (``mlp_small``, 20 epochs, batch 32; trained by heal_bench.py) scores 0.915
on the 2000-2006 held-out rows and 0.783 on the 2009-2015 ones (monthly label). ``monthly`` is the
moderate, real drift the benchmark uses; ``fixed`` is kept for comparison
(``heal_bench.py --real-label fixed``).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd

LABEL = "pricey"
KEY = "row_id"
FEATURES = ["city", "month", "sales", "listings", "inventory"]
NUMERIC = ["sales", "listings", "inventory"]
TRAIN_YEARS = (2000, 2006)
LIVE_YEARS = (2009, 2015)
EVERY = 5  # every 5th row (by row_id) is held out
LABEL_RULES = ("monthly", "fixed")
FILES = ("train", "baseline", "live", "holdout")


def csv_path() -> Path:
    """plotnine's copy of the table, found without importing plotnine."""
    spec = importlib.util.find_spec("plotnine")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("plotnine is not installed: pip install -c constraints.txt -e '.[bench]' (make bench does)")
    return Path(spec.submodule_search_locations[0]) / "data" / "txhousing.csv"


def table(label: str = "monthly") -> pd.DataFrame:
    """The labelled table: row_id, year, the features and the label, rows without a median dropped."""
    if label not in LABEL_RULES:
        raise ValueError(f"label must be one of {LABEL_RULES}, got {label!r}")
    raw = pd.read_csv(csv_path())
    raw.insert(0, KEY, np.arange(len(raw), dtype=np.int64))
    df = raw.dropna(subset=["median"]).reset_index(drop=True)
    if label == "fixed":
        threshold = df.loc[df.year.between(*TRAIN_YEARS), "median"].median()
    else:
        threshold = df.groupby(["year", "month"])["median"].transform("median")
    df[LABEL] = (df["median"] > threshold).astype(np.int64)
    df["month"] = df["month"].astype(np.int64)
    return df[[KEY, "year", *FEATURES, LABEL]].sort_values(["year", "month", "city"], kind="stable")


def split(label: str = "monthly") -> dict[str, pd.DataFrame]:
    """train / baseline (2000-2006) and live / holdout (2009-2015), as described above; live in time order."""
    df = table(label)
    held = df[KEY] % EVERY == 0
    pre, post = df.year.between(*TRAIN_YEARS), df.year.between(*LIVE_YEARS)
    parts = {"train": df[pre & ~held], "baseline": df[pre & held], "live": df[post & ~held],
             "holdout": df[post & held]}
    return {k: v.drop(columns=["year"]).reset_index(drop=True) for k, v in parts.items()}


def live_order(live: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The live rows month by month in time order, the cities within a month in a seeded order."""
    rng = np.random.default_rng(seed)
    shuffled = live.assign(_r=rng.random(len(live)))
    # live is sorted by (year, month, city): its month boundaries are where month changes.
    month_no = (shuffled["month"] != shuffled["month"].shift()).cumsum()
    return shuffled.assign(_m=month_no).sort_values(["_m", "_r"]).drop(columns=["_r", "_m"]).reset_index(drop=True)


def send(gen, path: Path, phase: str, rate: float | None = None) -> None:
    """Send a prepared file's rows as labelled traffic (``foundry.demo.traffic.TrafficGenerator``)."""
    gen.send_frame(pd.read_parquet(path), LABEL, phase, features=FEATURES, rate_rows_per_s=rate)


def send_live(gen, path: Path, seed: int, rate: float, stop) -> None:
    """The live rows as traffic in time order (``live_order``), 250 at a time until ``stop`` is set; after
    the first pass (phase ``drift``, ~2,900 rows) the same months again (phase ``drift-replay``)."""
    live = pd.read_parquet(path)
    for replay in range(1000):
        rows = live_order(live, seed=1000 * seed + replay)
        for start in range(0, len(rows), 250):
            if stop.is_set():
                return
            gen.send_frame(rows.iloc[start:start + 250], LABEL, "drift" if replay == 0 else "drift-replay",
                           features=FEATURES, rate_rows_per_s=rate)


def write(outdir: Path, label: str = "monthly") -> dict[str, Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in split(label).items():
        paths[name] = outdir / f"{name}.parquet"
        frame.to_parquet(paths[name], index=False)
    return paths


def proxy_drift(parts: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Accuracy of a logistic regression trained on ``train`` (and of one on ``live``, the oracle)."""
    from sklearn.linear_model import LogisticRegression

    cities = sorted(pd.concat(parts.values()).city.unique())
    stats = {c: (np.log1p(parts["train"][c]).mean(), np.log1p(parts["train"][c]).std()) for c in NUMERIC}

    def x(d: pd.DataFrame) -> pd.DataFrame:
        out = pd.get_dummies(pd.Categorical(d.city, categories=cities)).astype(float)
        for c in NUMERIC:
            out[c] = ((np.log1p(d[c].to_numpy()) - stats[c][0]) / stats[c][1])
            out[c + "_na"] = d[c].isna().to_numpy().astype(float)
        out["month"] = d.month.to_numpy() / 12
        return out.fillna(0.0)

    def fit(d):
        return LogisticRegression(max_iter=5000).fit(x(d), d[LABEL])

    first, oracle = fit(parts["train"]), fit(parts["live"])
    return {"first_on_baseline": first.score(x(parts["baseline"]), parts["baseline"][LABEL]),
            "first_on_holdout": first.score(x(parts["holdout"]), parts["holdout"][LABEL]),
            "oracle_on_holdout": oracle.score(x(parts["holdout"]), parts["holdout"][LABEL]),
            "holdout_positive_rate": float(parts["holdout"][LABEL].mean())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("--label", choices=LABEL_RULES, default="monthly")
    args = p.parse_args(argv)
    paths = write(args.outdir, args.label)
    parts = {k: pd.read_parquet(v) for k, v in paths.items()}
    for name, frame in parts.items():
        print(f"{paths[name]}: {len(frame):,} rows, {frame[LABEL].mean():.2f} positive")
    figures = proxy_drift(parts)
    print(f"logistic regression (label={args.label}): first version {figures['first_on_baseline']:.3f} on "
          f"2000-2006 held-out rows, {figures['first_on_holdout']:.3f} on 2009-2015 held-out rows; oracle "
          f"{figures['oracle_on_holdout']:.3f} (held-out positive rate {figures['holdout_positive_rate']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
