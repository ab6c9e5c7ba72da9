"""heal_bench's scenarios: the private cluster's settings, the monitor and trainer overrides, each scenario's
model, config sources and held-out set of the new distribution (``Case``), and when an episode is over."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks import real_drift
from benchmarks.harness import REPO, cluster_settings

GCS_PORT, DASHBOARD_PORT, CLUSTER = cluster_settings("heal-bench", (6620, 8620))
STORAGE = REPO / "benchmarks" / "results" / "tmp" / "heal-storage"
CONF = REPO / "benchmarks" / "conf"
MODEL = "churn"
APP = "heal"
MONITOR = ["drift.window.size=1000", "drift.window.test_every_rows=500",
           "drift.retrain.min_labelled_rows=2000", "drift.retrain.max_rows=10000",
           'drift.retrain.overrides=["+experiment=quick","trainer.num_workers=1"]']
SCENARIOS = ("concept_shift", "covariate_shift", "new_category", "label_shift", "benign_shift", "harmful_covariate",
             "real")
ROLLOUT_KEYS = ("canary_bad_challenger_traffic_share", "canary_rows_to_rollback", "canary_rows_to_full",
                "shadow_p99_overhead", "false_rollbacks", "false_rollbacks_long_horizon", "failed_requests", "rollouts")
HOLDOUT_ROWS, HOLDOUT_SEED = 5000, 90_000  # the churn scenarios' held-out set: a seed used nowhere else
ORACLE_ROWS, ORACLE_SEED = 20_000, 91_000
CHURN_TRAIN = ["+experiment=quick", "trainer.num_workers=1"]
# The first Texas housing version, its retrains and its oracle: one trainer config (a few thousand rows
# need small batches and more epochs than the churn model's 20,000).
REAL_TRAINER = ["trainer.num_workers=1", "trainer.epochs=20", "trainer.batch_size=32", "trainer.lr=0.01"]
REAL_MONITOR = ["drift.retrain.overrides=[" + ",".join(f'"{o}"' for o in REAL_TRAINER) + "]"]
HEALED_POINTS = 0.02  # an episode that ends without a swap "heals" only if what serves is this close to the oracle
END_KINDS = {"rolled_out", "gave_up"}  # with TERMINAL_KINDS: the episode is over
# A benign_shift (the alarm saw the shift and no harm) ends a run once this long has passed with no episode:
# harm evidence from labels may still come after an input alarm's watch.
BENIGN_GRACE_S = 60.0


def episode_over(kinds: set[str], retry_after_rejection: bool) -> bool:
    """Rolled out, given up or otherwise terminal. A rejection ends it only where the monitor does not try
    again (a config without ``drift.retrain.max_attempts``: then the cooldown follows, nothing more)."""
    from foundry.drift.timeline import TERMINAL_KINDS

    terminal = (TERMINAL_KINDS - {"rejected"}) if retry_after_rejection else TERMINAL_KINDS
    return bool(kinds & (terminal | END_KINDS))


@dataclass
class Case:
    """One scenario's model, how its commands find its config, and its held-out set of the new distribution."""
    scenario: str
    model: str
    sources: list[str]  # config sources before the overrides (``--config-dir`` and the data group for real)
    train: list[str]
    monitor: list[str]
    holdout: object  # pandas.DataFrame
    v1: str = ""
    oracle: dict = field(default_factory=dict)


def cases(scenarios: list[str], real_label: str) -> dict[str, Case]:
    from foundry.datasets import generate

    out = {}
    for s in scenarios:
        if s == "real":
            parts = real_drift.write(STORAGE / "datasets" / "txhousing", real_label)
            import pandas as pd

            out[s] = Case(s, "txhousing", ["--config-dir", str(CONF), "data=txhousing"],
                          ["model=mlp_small", *REAL_TRAINER], REAL_MONITOR, pd.read_parquet(parts["holdout"]))
        else:
            out[s] = Case(s, MODEL, [], CHURN_TRAIN, [], generate("churn", s, HOLDOUT_ROWS, seed=HOLDOUT_SEED))
    return out
