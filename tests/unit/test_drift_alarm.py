"""The sequential alarm's statistics (``foundry.drift.evidence``, ``foundry.drift.alarm``), with fixed seeds.

A model version like the training job stages it (5,000-row reference sample, probabilities calibrated
by temperature scaling on held-out rows); clean and drifted streams from the bundled generator. Each
test says what it would catch.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from foundry import config, datasets
from foundry.config import Task
from foundry.drift import evidence
from foundry.drift.alarm import LABELLED, RowSignals, SequentialAlarm, _delta, fit_label_signal
from foundry.drift.detectors import _errors
from foundry.models.predictor import REFERENCE_FILE, Predictor
from foundry.train.calibration import CALIBRATION_FILE, fit_temperature
from tests.versions import build_version_dir

BUDGET = 1_000_000


@pytest.fixture(scope="module")
def cfg():
    return config.load([])


@pytest.fixture(scope="module")
def version(tmp_path_factory, cfg):
    out = build_version_dir(cfg, tmp_path_factory.mktemp("alarm-version"), rows=20_000, reference_rows=5_000,
                            steps=150)
    predictor = Predictor.from_dir(out)
    held_out = datasets.generate("churn", "baseline", 5_000, seed=7)
    enc = predictor.preprocessor.transform_with_label(held_out)
    fitted = fit_temperature(Task.binary, predictor.logits(enc["x_num"], enc["x_cat"]), enc["y"])
    (out / CALIBRATION_FILE).write_text(pd.Series(fitted).to_json())
    return out


@pytest.fixture(scope="module")
def predictor(version):
    return Predictor.from_dir(version)


@pytest.fixture(scope="module")
def reference(version):
    return pd.read_parquet(version / REFERENCE_FILE)


def stream(predictor, cfg, scenario: str, rows: int, seed: int):
    df = datasets.generate("churn", scenario, rows, seed=seed)
    pred = predictor.predict(df[[f.name for f in cfg.data.features]])
    errors = _errors("binary", pred.values, df[cfg.data.label].to_numpy())
    return pred.encoded["x_num"], pred.encoded["x_cat"], pred.proba, errors


def run(alarm: SequentialAlarm, parts, labels: bool = True, batch: int = 500) -> list:
    x_num, x_cat, scores, errors = parts
    for i in range(0, len(x_num), batch):
        alarm.feed_rows(x_num[i:i + batch], x_cat[i:i + batch], scores[i:i + batch])
        if labels:
            alarm.feed_labels(errors[i:i + batch])
    return alarm.take()


def naive(alarm: SequentialAlarm, predictor, reference) -> SequentialAlarm:
    """The same signals, bounds set to the reference's own means: a calibration that takes the reference
    sample for the truth (what made the windowed tests flag 28% of clean rounds against 10%)."""
    pred = predictor.predict(reference)
    g = alarm.rows_signals.transform(pred.encoded["x_num"], pred.encoded["x_cat"], pred.proba)
    everything = np.ones(alarm.bank.size, dtype=bool)
    alarm.bank.set_bounds(everything, np.clip(g.mean(axis=0), 1e-3, 1 - 1e-3))
    errors = _errors("binary", pred.values, reference["churned"].to_numpy())
    alarm.label_bank.set_bounds(np.ones(1, dtype=bool), [errors.mean()])
    return alarm


def test_the_budget_holds_on_200000_clean_rows_and_a_calibration_that_ignores_the_reference_error_fails_it(
        cfg, predictor, reference):
    """At one false alarm per million rows, 200,000 clean rows (labels at once) must raise nothing (a
    correct monitor does so with probability >= 0.8 by the budget alone, far more with its margins).
    Catches: bounds without the reference sample's own error, weights that sum to more than 1, a
    threshold below the budget. The naive calibration on the same rows must fail, or this test could not."""
    clean = stream(predictor, cfg, "baseline", 200_000, seed=2000)
    alarm = SequentialAlarm.fit(cfg.drift.alarm, predictor, reference)
    assert alarm.log_threshold == pytest.approx(math.log(BUDGET))
    assert run(alarm, clean) == []
    broken = naive(SequentialAlarm.fit(cfg.drift.alarm, predictor, reference), predictor, reference)
    assert len(run(broken, clean)) >= 1


def _clean_bernoulli_rate(signals: int, threshold: float, steps: int, seed: int, split: bool) -> float:
    """Alarms per step on streams at exactly their bounds (the hardest null: the e-values' mean is 1):
    ``split`` shares one budget among the signals (the alarm's design); otherwise each signal alarms at
    the full threshold on its own and the monitor ORs them (the old design's votes)."""
    rng = np.random.default_rng(seed)
    bounds = rng.uniform(0.05, 0.5, size=signals)
    banks = ([evidence.CusumBank(bounds, np.full(signals, 1 / signals), [0.05, 0.15, 0.4, 0.9])] if split else
             [evidence.CusumBank(bounds[j:j + 1], np.ones(1), [0.05, 0.15, 0.4, 0.9]) for j in range(signals)])
    g = (rng.random((steps, signals)) < bounds).astype(np.float64)
    alarms = 0
    for b, bank in enumerate(banks):
        cols = slice(None) if split else slice(b, b + 1)
        start = 0
        while start < steps:
            crossing = bank.feed(g[start:, cols], math.log(threshold))
            if crossing is None:
                break
            alarms += 1
            bank.reset()
            start += crossing.row + 1
    return alarms / steps


def test_adding_signals_does_not_raise_the_false_alarm_rate():
    """The budget is one for the whole monitor: with 1 or 32 signals, all exactly at their bounds, the
    alarm rate stays under 1/threshold. Catches: a threshold per signal (OR-ed, as the windowed votes
    were), measured here at several times the budget."""
    threshold, steps = 2_000, 200_000
    one = _clean_bernoulli_rate(1, threshold, steps, seed=1, split=True)
    many = _clean_bernoulli_rate(32, threshold, steps, seed=1, split=True)
    ored = _clean_bernoulli_rate(32, threshold, steps, seed=1, split=False)
    assert one <= 1 / threshold and many <= 1 / threshold, (one, many)
    assert ored > 3 / threshold, ored


@pytest.mark.parametrize("scenario", ["covariate_shift", "new_category", "benign_shift", "harmful_covariate"])
def test_the_expected_error_tracks_the_true_error_under_covariate_shift(cfg, predictor, scenario):
    """Confidence-based performance estimation: with calibrated probabilities the mean of 1 - max p is
    the error rate within 0.02 under every covariate scenario (P(y | x) holds). Catches: uncalibrated
    probabilities, the wrong column, or a harmful scenario that harms nothing."""
    x_num, x_cat, proba, errors = stream(predictor, cfg, scenario, 30_000, seed=31)
    estimated = float(np.mean(1 - proba.max(axis=1)))
    assert abs(estimated - errors.mean()) <= 0.02, (estimated, errors.mean())
    if scenario == "harmful_covariate":
        base = stream(predictor, cfg, "baseline", 30_000, seed=31)[3].mean()
        assert errors.mean() - base >= 0.04


def test_harm_without_labels_starts_an_episode_and_a_benign_shift_does_not(cfg, predictor, reference):
    """Labels withheld: a harmful covariate shift must raise a harm alarm from the expected error alone
    within 2,000 rows; a benign one only an input alarm and then a benign verdict. Catches: harm read from
    input drift alone, a watch that never ends, an estimate that does not vote."""
    base = stream(predictor, cfg, "baseline", 2_000, seed=40)
    harmful = stream(predictor, cfg, "harmful_covariate", 4_000, seed=41)
    alarm = SequentialAlarm.fit(cfg.drift.alarm, predictor, reference)
    assert run(alarm, base, labels=False, batch=100) == []
    raised = run(alarm, harmful, labels=False, batch=100)
    harm = [a for a in raised if a.kind == "harm"]
    assert harm and harm[0].family == "estimated" and harm[0].row - 2_000 <= 2_000, [a.to_dict() for a in raised]

    benign = stream(predictor, cfg, "benign_shift", 4_000, seed=42)
    alarm = SequentialAlarm.fit(cfg.drift.alarm, predictor, reference)
    raised = run(alarm, benign, labels=False, batch=100)
    assert [a.kind for a in raised] == ["input", "benign"], [a.to_dict() for a in raised]
    assert raised[0].row <= 300


def test_bounds_hold_their_confidence():
    """Clopper-Pearson and DKW as the alarm uses them. Catches: an upper bound below the observed rate, or a
    margin that does not shrink with the reference size."""
    assert evidence.rate_upper(0, 5000, 0.001) == pytest.approx(1 - 0.001 ** (1 / 5000), rel=1e-3)
    assert 0.2 < evidence.rate_upper(1000, 5000, 0.001) < 0.22
    assert evidence.pit_margin(5000, 0.01) < evidence.pit_margin(500, 0.01)
    ref = np.sort(np.repeat(np.arange(5.0), 100))[:, None]  # ties: the mid-PIT's mean is still 1/2
    assert evidence.mid_pit(ref, ref).mean() == pytest.approx(0.5)


@pytest.mark.parametrize("n", [100, 1000])
def test_the_regression_error_quantiles_bound_holds_its_confidence_and_no_more(n):
    """The share of new rows above a sample's 90% quantile, bounded at confidence 0.95, over 4,000 samples:
    the bound fails in ~5% of them for continuous rows (exact: the quantile's order statistic is Beta) and
    less with ties (Poisson counts). Catches: a bound that fails more often (too tight), or DKW's band,
    which never failed here (wider than it needs to be: a regression model's harm went unseen)."""
    rng = np.random.default_rng(3)
    bound = evidence.exceedance_upper(n, 0.9, 0.05)
    from scipy import stats

    exp_missed = poisson_missed = 0
    for _ in range(4000):
        exp_missed += math.exp(-np.quantile(rng.exponential(size=n), 0.9)) > bound
        poisson_missed += stats.poisson.sf(np.quantile(rng.poisson(3, size=n), 0.9), 3) > bound
    assert 0.035 <= exp_missed / 4000 <= 0.062, exp_missed
    assert poisson_missed / 4000 <= 0.062, poisson_missed
    assert bound < 0.1 + evidence.pit_margin(n, 0.05)


def _regression_alarm(cfg, reference_errors: np.ndarray) -> SequentialAlarm:
    """A regression monitor's alarm whose labelled signal is fitted on ``reference_errors``; its row
    signals (one numeric input, the prediction) are not fed here."""
    rng = np.random.default_rng(0)
    ref = np.sort(rng.normal(size=(len(reference_errors), 1)), axis=0)
    rows = RowSignals("regression", ["x"], ref, [], [], ref.copy(), np.array([0.6, 0.6]), np.array([0.6, 0.6]), None)
    return SequentialAlarm(cfg, None, rows, fit_label_signal(cfg, "regression", reference_errors))


def test_a_regression_model_with_a_small_reference_is_flagged_when_its_large_errors_double():
    """100 reference rows (a small real data set's held-out share): live rows whose absolute error exceeds
    the reference's 90% quantile go from 12% (clean) to 25% (harmed). The labelled alarm flags the harm
    within 10,000 labels and stays silent on 200,000 clean ones. With DKW's bound (0.28 here, what the
    alarm used) the same harmed stream raises nothing in 60,000 labels, or this test could not fail."""
    cfg = config.load(["data=churn_ltv"]).drift.alarm
    reference = np.random.default_rng(11).normal(0, 1, 100)
    alarm = _regression_alarm(cfg, reference)
    q = alarm.label.error_threshold
    rng = np.random.default_rng(5)
    harmed = rng.normal(0, 1, 60_000)
    hit = rng.random(len(harmed)) < 0.15
    harmed[hit] = q + np.abs(rng.normal(0, 1, hit.sum())) + 1e-9  # errors past the quantile
    assert 0.23 < np.mean(np.abs(harmed) > q) < 0.27

    raised = alarm.feed_labels(harmed[:10_000])
    assert raised and (raised[0].kind, raised[0].family) == ("harm", LABELLED), [a.to_dict() for a in raised]
    assert _regression_alarm(cfg, reference).feed_labels(np.random.default_rng(9).normal(0, 1, 200_000)) == []
    dkw = _regression_alarm(cfg, reference)
    dkw_bound = 0.1 + evidence.pit_margin(len(reference), _delta(cfg, LABELLED, 1)) + cfg.harm_tolerance
    assert dkw_bound > np.mean(np.abs(harmed) > q)
    dkw.label_bank.set_bounds(np.ones(1, dtype=bool), [dkw_bound])
    assert dkw.feed_labels(harmed) == []


def test_temperature_scaling_undoes_overconfidence():
    """Logits three times too large (an overconfident network) give T close to 3, and a lower log loss.
    Catches: a fit that does not move T, or that divides where it should multiply."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, 20_000)
    y = (rng.random(len(z)) < 1 / (1 + np.exp(-z))).astype(np.int64)
    fitted = fit_temperature(Task.binary, (3 * z)[:, None], y)
    assert 2.7 < fitted["temperature"] < 3.3 and fitted["log_loss_after"] < fitted["log_loss_before"]


def test_unlabelled_input_drift_starts_an_episode_only_under_its_policy(cfg, predictor, reference):
    """``harm_or_unlabelled_drift``: a benign-looking shift watched without any label starts an episode; the
    same with labels flowing is still benign. Catches: the policy ignored, or labels not counted in the watch."""
    drifted = stream(predictor, cfg, "benign_shift", 3_000, seed=43)
    policy = config.load(["drift.alarm.policy=harm_or_unlabelled_drift"]).drift.alarm
    blind = run(SequentialAlarm.fit(policy, predictor, reference), drifted, labels=False, batch=100)
    assert [a.kind for a in blind][:2] == ["input", "drift"] and blind[1].starts_episode
    labelled = run(SequentialAlarm.fit(policy, predictor, reference), drifted, labels=True, batch=100)
    assert [a.kind for a in labelled] == ["input", "benign"]
