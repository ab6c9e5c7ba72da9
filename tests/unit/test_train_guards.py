"""A version that would be served with nothing watching it is never registered: the training job fails
when the drift reference sample is too small or the drift detectors cannot be built (before, it printed
``drift reference sample: 0 rows``, a ValueError, exited 0 and promoted; the pipeline then served the
model and died when its monitor could not start). And a fault while judging the champion is not a
verdict: a registry that cannot be read fails the job (retried), only a champion of another schema is
kept unchallenged (before, any error counted as "kept champion")."""

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
    assert _build_detectors(off.drift, None, "run", say=lambda _: None) == {"built": False, "reason": "drift.enabled=false"}


def test_detectors_that_cannot_be_built_fail_the_job(cfg, tmp_path):
    with pytest.raises(DriftSetupError, match="nothing was registered"):
        _build_detectors(cfg.drift, tmp_path, "run", say=lambda _: None)  # no reference sample in the staging dir


# ---- the promotion decision's faults: a fault is not a verdict -------------------------------------------------

class _Rows:
    """The test split as the workflow reads it (``iter_batches`` of pandas frames)."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def iter_batches(self, batch_size: int, batch_format: str):
        yield from (self.frame.iloc[i:i + batch_size] for i in range(0, len(self.frame), batch_size))


class _Registry:
    def __init__(self, champion_dir, fail: Exception | None = None):
        self.champion_dir, self.fail = champion_dir, fail

    def alias(self, model, alias):
        return "v-champion"

    def fetch(self, model, version):
        if self.fail:
            raise self.fail
        return self.champion_dir


def _decision(cfg, tmp_path, registry, rows: pd.DataFrame):
    from types import SimpleNamespace

    from foundry.train.workflow import _evaluate_and_decide
    from tests.versions import build_version_dir

    staging = build_version_dir(cfg, tmp_path / "challenger", steps=5)
    return _evaluate_and_decide(cfg, registry, staging, SimpleNamespace(test_raw=_Rows(rows)), say=lambda _: None)


def test_a_champion_that_cannot_be_fetched_fails_the_job_instead_of_being_kept(cfg, tmp_path):
    from foundry import datasets

    rows = datasets.generate("churn", "baseline", 300, seed=3)
    with pytest.raises(OSError, match="storage unreachable"):
        _decision(cfg, tmp_path, _Registry(None, fail=OSError("storage unreachable")), rows)


def test_a_champion_of_another_schema_is_kept_unchallenged_and_a_same_schema_one_is_gated(cfg, tmp_path):
    import json

    from foundry import datasets
    from tests.versions import build_version_dir

    rows = datasets.generate("churn", "baseline", 300, seed=3)
    champion = build_version_dir(cfg, tmp_path / "champion", steps=40)
    verdict = _decision(cfg, tmp_path / "a", _Registry(champion), rows)
    assert verdict.gate is not None and verdict.gate["rows"] == 300  # scored on every row, by the gate
    # The champion expects a column this data set does not have: a verdict (kept), not a failed job.
    pre = json.loads((champion / "preprocessor.json").read_text())
    pre["numeric"][0]["name"] = "a_column_that_is_gone"
    (champion / "preprocessor.json").write_text(json.dumps(pre))
    verdict = _decision(cfg, tmp_path / "b", _Registry(champion), rows)
    assert not verdict.promote and verdict.gate is None
    assert "could not be evaluated on this data" in verdict.decision and "a_column_that_is_gone" in verdict.decision
