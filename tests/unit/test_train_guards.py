"""A version that would be served with nothing watching it is never registered: the training job fails
when the drift reference sample is too small or the drift detectors cannot be built (before, it printed
``drift reference sample: 0 rows``, a ValueError, exited 0 and promoted; the pipeline then served the
model and died when its monitor could not start)."""

from __future__ import annotations

import pandas as pd
import pytest

from foundry import config
from foundry.errors import DataValidationError, DriftSetupError
from foundry.train.workflow import MIN_REFERENCE_ROWS, _build_detectors, check_reference


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return config.load([f"storage.root={tmp_path_factory.mktemp('root')}"])


def test_a_too_small_reference_sample_fails_a_monitored_training(cfg):
    with pytest.raises(DataValidationError, match="drift reference sample too small") as err:
        check_reference(cfg, pd.DataFrame({"x": range(MIN_REFERENCE_ROWS - 1)}))
    assert err.value.exit_code == 3 and "drift.enabled=false" in str(err.value)
    check_reference(cfg, pd.DataFrame({"x": range(MIN_REFERENCE_ROWS)}))  # enough


def test_an_unmonitored_training_needs_no_reference(cfg):
    import dataclasses

    off = dataclasses.replace(cfg, drift=dataclasses.replace(cfg.drift, enabled=False))
    check_reference(off, pd.DataFrame())
    assert _build_detectors(off, None, "run", say=lambda _: None) == {"built": False, "reason": "drift.enabled=false"}


def test_detectors_that_cannot_be_built_fail_the_job(cfg, tmp_path):
    with pytest.raises(DriftSetupError, match="nothing was registered"):
        _build_detectors(cfg, tmp_path, "run", say=lambda _: None)  # no reference sample in the staging dir
