"""What kind of failure a warm start's registry lookup is (foundry/train/warm_start.py): a wrong
``trainer.warm_start_from`` is a configuration error (exit 2, which the drift monitor does not retry);
storage that did not answer is not, so a retrain that met it is retried."""

from __future__ import annotations

import pytest

from foundry import config
from foundry.errors import ConfigError, RegistryError
from foundry.train import warm_start


class _Registry:
    def __init__(self, error: Exception):
        self.error = error

    def get(self, model, ref):
        raise self.error


def _trainer(ref: str):
    cfg = config.load([f"trainer.warm_start_from={ref}"])
    return cfg.trainer, cfg.data


def test_an_unknown_version_is_a_configuration_error_naming_the_key():
    trainer, data = _trainer("churn@v20990101-000000-000-aaaaaa")
    with pytest.raises(ConfigError, match="trainer.warm_start_from=churn@v2099"):
        warm_start.load(trainer, data, _Registry(RegistryError("unknown version v2099...")))


def test_storage_that_does_not_answer_is_not_a_configuration_error():
    """Catches: every lookup failure turned into exit 2, so a retrain that met a storage hiccup was given up."""
    trainer, data = _trainer("churn@production")
    with pytest.raises(OSError, match="connection reset"):
        warm_start.load(trainer, data, _Registry(OSError("connection reset by peer")))
