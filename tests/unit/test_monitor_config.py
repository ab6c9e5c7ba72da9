"""The drift monitor is built from the sections it reads (``MonitorConfig``), not the whole config tree."""

from __future__ import annotations

import pytest

from foundry import config
from foundry.drift.monitor_config import MonitorConfig, monitor_config
from foundry.errors import ConfigError

READ = {"model_name", "data", "storage", "drift", "promotion", "serve", "cluster"}


@pytest.fixture
def cfg(tmp_path):
    return config.load([f"storage.root={tmp_path}"])


def test_the_monitor_gets_only_the_sections_it_reads(cfg):
    data = monitor_config(cfg).to_container()
    assert set(data) == READ
    for section in ("model", "trainer", "ray", "tune", "demo", "tracking", "trigger", "drift_episode"):
        assert section not in data
    with pytest.raises(ConfigError, match="trainer"):  # a whole tree is refused, not silently ignored
        MonitorConfig.from_container({**data, "trainer": config.to_container(cfg)["trainer"]})


def test_the_actor_rebuilds_the_same_sections(cfg):
    rebuilt = MonitorConfig.from_container(monitor_config(cfg).to_container())
    assert rebuilt == monitor_config(cfg)
    for name in READ:
        assert getattr(rebuilt, name) == getattr(cfg, name)


@pytest.mark.parametrize("override", ["demo.traffic.rate_rows_per_s=7", "trainer.epochs=3", "tune=quick",
                                      "tracking.mlflow.enabled=true"])
def test_an_edit_to_a_section_it_does_not_read_leaves_its_config_unchanged(tmp_path, override):
    base = monitor_config(config.load([f"storage.root={tmp_path}"])).to_container()
    edited = monitor_config(config.load([f"storage.root={tmp_path}", override])).to_container()
    assert base == edited


def test_the_monitor_validates_what_it_holds(cfg):
    data = monitor_config(cfg).to_container()
    data["drift"]["window"]["size"] = 0
    with pytest.raises(ConfigError, match="drift.window.size"):
        MonitorConfig.from_container(data)
