"""The config schema imports without Hydra and OmegaConf (foundry/config/__init__.py, common.MISSING): a
training worker unpickles its TrainerConfig and Task and would otherwise spend ~0.3 s of its start-up
(on the critical path of every fit) importing both. Composing still gets them."""

from __future__ import annotations

import omegaconf

from foundry import config
from foundry.config import common
from tests.imports import modules_after as _modules_after


def test_the_schema_and_the_training_loop_import_without_hydra_or_omegaconf():
    for code in ("from foundry.config import TrainerConfig, Task, FoundryConfig",
                 "import foundry.train.loop"):
        loaded = _modules_after(code)
        assert "foundry.config" in loaded
        assert not {"hydra", "omegaconf", "foundry.config.loading"} & loaded, code


def test_composing_still_loads_them_on_first_use():
    loaded = _modules_after("from foundry import config; config.load([])")
    assert {"hydra", "omegaconf", "foundry.config.loading"} <= loaded
    assert config.load is config.loading.load and config.CONF_DIR == config.loading.CONF_DIR


def test_the_marker_is_omegaconfs():
    assert common.MISSING == omegaconf.MISSING
    assert config.load([]).data.name  # a required value given by conf/: still required, still filled
