"""Ray Tune configuration and the pieces of the search that need no cluster: the search space, a
trial's config, the stored config.yaml of a tuned version, and how a finished trial is classified."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from foundry import config
from foundry.errors import ConfigError
from foundry.train.tuning import _trial_status, apply_trial, search_space
from foundry.train.workflow import _with_tuned_values
from jobs.tune import DEFAULT_SEARCH, with_default_search


@pytest.fixture(scope="module")
def quick(unit_storage_root):
    return config.load([f"storage.root={unit_storage_root}", "tune=quick"])


def _load(root, *overrides):
    return config.load([f"storage.root={root}", *overrides])


def test_tuning_is_off_unless_a_search_is_picked(cfg, quick):
    assert cfg.tune.enabled is False
    assert quick.tune.enabled is True and quick.tune.num_samples == 4
    # quick.yaml extends asha.yaml: what it does not set comes from there.
    assert quick.tune.metric == "best_val_loss" and quick.tune.trial_num_workers == 1


def test_search_space_maps_every_dimension_to_a_tune_domain(quick):
    from ray.tune.search.sample import Categorical, Float

    space = search_space(quick.tune)
    assert set(space) == {"model", "trainer"}
    assert set(space["trainer"]) == set(quick.tune.space.trainer)
    assert isinstance(space["trainer"]["lr"], Float)
    assert isinstance(space["model"]["hidden_sizes"], Categorical)
    assert space["model"]["hidden_sizes"].categories == [[32, 16], [64, 32]]
    sampled = space["trainer"]["lr"].sample()
    assert quick.tune.space.trainer["lr"].low <= sampled <= quick.tune.space.trainer["lr"].high


def test_grid_and_randint_dimensions(unit_storage_root):
    from ray.tune.search.sample import Integer

    cfg = config.from_container({**config.to_container(_load(unit_storage_root, "tune=quick")),
                                 "tune": {"enabled": True, "space": {"trainer": {
                                     "epochs": {"kind": "randint", "low": 2, "high": 5},
                                     "optimizer": {"kind": "grid", "values": ["adam", "sgd"]}}, "model": {}}}})
    space = search_space(cfg.tune)
    assert isinstance(space["trainer"]["epochs"], Integer)
    assert space["trainer"]["optimizer"] == {"grid_search": ["adam", "sgd"]}
    assert "model" not in space


@pytest.mark.parametrize("overrides, key", [
    (["tune.space.trainer.lr.low=0"], "tune.space.trainer.lr"),
    (["tune.space.trainer.lr.low=0.5", "tune.space.trainer.lr.high=0.1"], "tune.space.trainer.lr"),
    (["tune.space.model.hidden_sizes.values=[]"], "tune.space.model.hidden_sizes"),
    (["tune.num_samples=0"], "tune.num_samples"),
    (["tune.max_concurrent_trials=0"], "tune.max_concurrent_trials"),
    (["tune.metric=accuracy"], "tune.metric"),
    (["tune.mode=up"], "tune.mode"),
    (["tune.scheduler.grace_period=50"], "tune.scheduler.grace_period"),
    (["tune.scheduler.reduction_factor=1"], "tune.scheduler.reduction_factor"),
    (["tune.trial_num_workers=0"], "tune.trial_num_workers"),
    (["tune.trial_driver_cpus=0"], "tune.trial_driver_cpus"),
])
def test_bad_tune_settings_name_the_key(unit_storage_root, overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _load(unit_storage_root, "tune=quick", *overrides)


@pytest.mark.parametrize("space, message", [
    ({"trainer": {"num_workers": {"kind": "choice", "values": [1, 2]}}}, "resource"),
    ({"model": {"depth": {"kind": "choice", "values": [1, 2]}}}, "has no key 'depth'"),
    ({}, "is empty"),
])
def test_a_search_space_may_only_name_hyperparameters(unit_storage_root, space, message):
    base = config.to_container(_load(unit_storage_root))
    with pytest.raises(ConfigError, match=message):
        config.from_container({**base, "tune": {"enabled": True, "space": space}})


def test_a_trial_config_takes_the_sampled_values_and_the_trial_resources(quick):
    trial = apply_trial(quick, {"model": {"hidden_sizes": [64, 32], "dropout": 0.05},
                                "trainer": {"lr": 0.004, "batch_size": 256}})
    assert trial.model.hidden_sizes == [64, 32] and trial.model.dropout == 0.05
    assert trial.trainer.lr == 0.004 and trial.trainer.num_workers == quick.tune.trial_num_workers
    assert quick.model.dropout != 0.05 or quick.trainer.lr != 0.004  # the original is not modified
    assert trial.data == quick.data and trial.storage == quick.storage


def test_an_invalid_sampled_value_is_a_config_error_naming_the_key(quick):
    with pytest.raises(ConfigError, match=r"model\.dropout"):
        apply_trial(quick, {"model": {"dropout": 1.5}})


def test_the_stored_config_of_a_tuned_version_shows_the_winning_values(quick):
    resolved = OmegaConf.to_yaml(OmegaConf.structured(quick))
    out = yaml.safe_load(_with_tuned_values(resolved, {"model": {"hidden_sizes": [64, 32]},
                                                       "trainer": {"lr": 0.0123}}))
    assert out["model"]["hidden_sizes"] == [64, 32] and out["trainer"]["lr"] == 0.0123
    assert out["data"]["name"] == quick.data.name


@pytest.mark.parametrize("metrics, error, status", [
    ({"training_iteration": 6, "early_stopped": False}, None, "completed"),
    ({"training_iteration": 2, "early_stopped": False}, None, "stopped_by_scheduler"),
    ({"training_iteration": 3, "early_stopped": True}, None, "early_stopped"),
    ({"training_iteration": 1}, RuntimeError("boom"), "error"),
])
def test_trial_status(metrics, error, status):
    result = SimpleNamespace(metrics=metrics, error=error, metrics_dataframe=pd.DataFrame())
    assert _trial_status(result, max_t=6) == status


@pytest.mark.parametrize("argv, added", [
    (["jobs/tune.py"], True),
    (["jobs/tune.py", "trainer.epochs=3"], True),
    (["jobs/tune.py", "tune=quick"], False),
    (["jobs/tune.py", "tune.num_samples=2"], True),
    (["jobs/tune.py", "tune.num_samples=2", "+tune=quick"], False),
])
def test_jobs_tune_searches_with_asha_unless_told_otherwise(argv, added):
    out = with_default_search(list(argv))
    assert (DEFAULT_SEARCH in out) is added and out[: len(argv)] == argv
