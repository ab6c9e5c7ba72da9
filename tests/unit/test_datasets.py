"""The bundled data set is what every other stage is tested on, so its guarantees are tested here:
it conforms to conf/data/churn.yaml, it is learnable, and each drift scenario is strong enough to
be detected (and healed) by the platform."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from foundry import config
from foundry.config import FeatureType, SourceConfig, SourceFormat, SyntheticSourceConfig
from foundry.datasets import SCENARIOS, ensure_source, generate
from foundry.datasets.__main__ import main as cli_main
from foundry.errors import ConfigError

ROWS = 20_000
NEW_CATEGORIES = {"payment_method": {"crypto"}, "region": {"central"}}


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return config.load([f"storage.root={tmp_path_factory.mktemp('root')}"])


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {s: generate("churn", s, ROWS, 0) for s in SCENARIOS}


def _design(df: pd.DataFrame, cfg, columns=None) -> pd.DataFrame:
    """One-hot categoricals, zero-filled numerics plus missing flags: the simplest fair learner input."""
    numeric = [f.name for f in cfg.data.features if f.type is FeatureType.numeric]
    categorical = [f.name for f in cfg.data.features if f.type is FeatureType.categorical]
    x = pd.get_dummies(df[numeric + categorical], columns=categorical, dtype=float)
    for name in numeric:
        x[f"{name}_missing"] = df[name].isna().astype(float)
    x = x.fillna(0.0)
    return x if columns is None else x.reindex(columns=columns, fill_value=0.0)


def _fit(df: pd.DataFrame, cfg):
    x = _design(df, cfg)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, df["churned"])
    return model, x.columns


def _halves(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    cut = int(len(df) * 0.75)
    return df.iloc[:cut], df.iloc[cut:]


@pytest.fixture(scope="module")
def baseline_model(frames, cfg):
    train, test = _halves(frames["baseline"])
    model, columns = _fit(train, cfg)
    return model, columns, test


def _accuracy(model, columns, df, cfg) -> float:
    return accuracy_score(df["churned"], model.predict(_design(df, cfg, columns)))


# ----- determinism

def test_same_arguments_give_identical_frames():
    for scenario in SCENARIOS:
        pd.testing.assert_frame_equal(generate("churn", scenario, 3000, 5), generate("churn", scenario, 3000, 5))


def test_different_seed_gives_different_data():
    a, b = generate("churn", "baseline", 3000, 0), generate("churn", "baseline", 3000, 1)
    assert not a["monthly_charges"].equals(b["monthly_charges"])
    assert not set(a["customer_id"]) & set(b["customer_id"])


def test_scenarios_change_only_what_they_drift(frames):
    base = frames["baseline"]
    features = [c for c in base.columns if c not in ("customer_id", "churned", "segment", "lifetime_value")]
    for scenario in ("concept_shift", "label_shift"):
        pd.testing.assert_frame_equal(frames[scenario][features], base[features])
    shifted = frames["covariate_shift"]
    for name in ("tenure_months", "contract", "plan", "support_calls", "satisfaction"):
        pd.testing.assert_series_equal(shifted[name], base[name])


def test_customer_ids_unique_within_and_across_scenarios(frames):
    ids = pd.concat([df["customer_id"] for df in frames.values()])
    assert ids.is_unique


# ----- schema conformance

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_conforms_to_the_schema(frames, cfg, scenario):
    df = frames[scenario]
    max_null = cfg.data.validation.max_null_fraction
    for f in cfg.data.features:
        assert f.name in df.columns, f.name
        col = df[f.name]
        nulls = col.isna().mean()
        assert nulls == 0 or f.nullable, f"{f.name}: nulls in a non-nullable column"
        assert nulls <= max_null, f"{f.name}: {nulls:.3f} nulls"
        present = col.dropna()
        if f.type is FeatureType.numeric:
            assert pd.api.types.is_numeric_dtype(col), f.name
            assert np.isfinite(present).all(), f.name
            assert present.min() >= f.min and present.max() <= f.max, (f.name, present.min(), present.max())
        else:
            allowed = set(f.values)
            if scenario == "new_category":
                allowed |= NEW_CATEGORIES.get(f.name, set())
            assert set(present) <= allowed, (f.name, set(present) - allowed)
    assert df["data_usage_gb"].isna().any() and df["satisfaction"].isna().any()


def test_new_category_introduces_the_documented_values(frames):
    df = frames["new_category"]
    assert 0.20 <= (df["payment_method"] == "crypto").mean() <= 0.30
    assert 0.10 <= (df["region"] == "central").mean() <= 0.20


# ----- labels

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_labels_are_sane(frames, scenario):
    df = frames[scenario]
    assert set(df["churned"].unique()) == {0, 1}
    assert 0.2 <= df["churned"].mean() <= 0.6
    assert np.isfinite(df["lifetime_value"]).all() and (df["lifetime_value"] > 0).all()
    assert set(df["segment"]) == {"value", "growth", "loyal"}
    assert df["segment"].value_counts(normalize=True).min() > 0.1


def test_baseline_churn_rate_and_label_configs(frames, tmp_path):
    assert 0.24 <= frames["baseline"]["churned"].mean() <= 0.30
    segment_cfg = config.load(["data=churn_segment", f"storage.root={tmp_path}"])
    assert set(frames["baseline"][segment_cfg.data.label]) == set(segment_cfg.data.classes)
    ltv_cfg = config.load(["data=churn_ltv", f"storage.root={tmp_path}"])
    assert ltv_cfg.data.label in frames["baseline"].columns


# ----- learnability and drift strength

def test_churn_is_learnable_but_noisy(baseline_model, cfg):
    model, columns, test = baseline_model
    auc = roc_auc_score(test["churned"], model.predict_proba(_design(test, cfg, columns))[:, 1])
    assert 0.75 <= auc <= 0.95


def test_concept_shift_breaks_a_baseline_model_and_is_itself_learnable(frames, baseline_model, cfg):
    model, columns, test = baseline_model
    _, drifted = _halves(frames["concept_shift"])
    drop = _accuracy(model, columns, test, cfg) - _accuracy(model, columns, drifted, cfg)
    assert drop >= 0.08
    train, holdout = _halves(frames["concept_shift"])
    retrained, cols = _fit(train, cfg)
    auc = roc_auc_score(holdout["churned"], retrained.predict_proba(_design(holdout, cfg, cols))[:, 1])
    assert auc >= 0.75


def test_label_shift_raises_the_churn_prior(frames):
    assert frames["label_shift"]["churned"].mean() - frames["baseline"]["churned"].mean() >= 0.15


def test_covariate_shift_moves_charges(frames):
    base, shifted = frames["baseline"]["monthly_charges"].mean(), frames["covariate_shift"]["monthly_charges"].mean()
    assert shifted / base - 1 >= 0.20


# ----- ensure_source

def _small(tmp_path: Path, **kw) -> SourceConfig:
    synthetic = SyntheticSourceConfig(**{"rows": 2000, **kw})
    return SourceConfig(path=str(tmp_path / "sub" / "churn.parquet"), format=SourceFormat.parquet,
                        synthetic=synthetic)


def test_ensure_source_writes_once_and_is_idempotent(tmp_path):
    source = _small(tmp_path)
    path = ensure_source(source)
    assert path == str(tmp_path / "sub" / "churn.parquet")
    df = pd.read_parquet(path)
    pd.testing.assert_frame_equal(df, generate("churn", "baseline", 2000, 0))
    os.utime(path, (1_000_000, 1_000_000))
    assert ensure_source(source) == path
    assert os.stat(path).st_mtime == 1_000_000
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["churn.parquet"]  # no temp files left


def test_ensure_source_from_the_composed_config(tmp_path):
    cfg = config.load([f"storage.root={tmp_path}", "data.source.synthetic.rows=1500",
                       "data.source.synthetic.scenario=new_category", "data.source.format=csv",
                       f"data.source.path={tmp_path}/d/batch.csv"])
    path = ensure_source(cfg.data.source)
    df = pd.read_csv(path)
    assert len(df) == 1500 and "crypto" in set(df["payment_method"])


def test_ensure_source_without_synthetic_touches_nothing(tmp_path):
    source = SourceConfig(path=str(tmp_path / "mine" / "data.parquet"), synthetic=None)
    assert ensure_source(source) == str(tmp_path / "mine" / "data.parquet")
    assert not (tmp_path / "mine").exists()


def test_ensure_source_never_overwrites_an_existing_file(tmp_path):
    source = _small(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "churn.parquet").write_bytes(b"user data")
    ensure_source(source)
    assert (tmp_path / "sub" / "churn.parquet").read_bytes() == b"user data"


@pytest.mark.parametrize(("field", "value"), [("scenario", "nope"), ("generator", "iris")])
def test_unknown_generator_or_scenario_names_the_key(tmp_path, field, value):
    with pytest.raises(ConfigError, match=rf"data\.source\.synthetic\.{field}.*known"):
        ensure_source(_small(tmp_path, **{field: value}))
    assert not (tmp_path / "sub").exists()


def test_cli_writes_the_file(tmp_path, capsys):
    out = tmp_path / "drift.csv"
    assert cli_main(["--scenario", "label_shift", "--rows", "1000", "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 1000
    assert "1000 rows" in capsys.readouterr().out
