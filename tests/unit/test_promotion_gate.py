"""The promotion gate (foundry/train/gate.py): a paired bootstrap on per-row proper losses.

Each test builds champion and challenger answers on the same rows with a known truth, so the verdict
a working gate must reach is known; the old rule (ROC AUC + a fixed margin, no test) gets several of
them wrong, and those tests say so.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from foundry.config import PromotionConfig, Task
from foundry.train.gate import decide, row_scores


def _binary(p1: np.ndarray, y: np.ndarray):
    proba = np.stack([1 - p1, p1], axis=1)
    return row_scores(Task.binary, y, proba, (p1 >= 0.5).astype(int))


def _label_shift(rows: int, seed: int):
    """Rows whose churn base rate moved from ~27% to ~50% with the ranking unchanged (only the intercept
    moved): the champion keeps the old intercept, the challenger has learnt the new one."""
    rng = np.random.default_rng(seed)
    score = rng.normal(0, 1.2, rows)
    y = (rng.random(rows) < 1 / (1 + np.exp(-score))).astype(int)  # the new world: intercept 0
    champion = 1 / (1 + np.exp(-(score - 1.0)))  # still the old world's intercept
    challenger = 1 / (1 + np.exp(-score))
    return y, champion, challenger


def test_label_shift_is_promoted_although_roc_auc_does_not_move():
    y, champion, challenger = _label_shift(400, seed=1)
    # The old rule compared ROC AUC: identical here (a monotone change of the scores), so it rejected.
    assert roc_auc_score(y, champion) == pytest.approx(roc_auc_score(y, challenger))
    result = decide(Task.binary, _binary(champion, y), _binary(challenger, y), PromotionConfig(min_improvement=0.01))
    assert result.promote, result.reason
    assert result.challenger_accuracy > result.champion_accuracy
    assert result.lower_bound > 0.01


def test_equally_good_models_are_rarely_promoted():
    """Two models of the same quality (independent noise around the same truth): the gate may promote
    only about (1 - confidence) of the time. A rule without a test (point estimate > 0) promotes half."""
    promoted = 0
    trials = 60
    for seed in range(trials):
        rng = np.random.default_rng(100 + seed)
        logit = rng.normal(0, 1.5, 500)
        y = (rng.random(500) < 1 / (1 + np.exp(-logit))).astype(int)
        a = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.5, 500))))
        b = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.5, 500))))
        result = decide(Task.binary, _binary(a, y), _binary(b, y), PromotionConfig(bootstrap_samples=500))
        promoted += result.promote
    assert promoted <= 0.1 * trials, promoted  # nominal 5%; 10% allows for the bootstrap's own error


def test_evidence_grows_with_rows():
    """A modest real improvement: not proven on 60 rows, proven on 5,000."""
    verdicts = {}
    for rows in (60, 5000):
        rng = np.random.default_rng(7)
        logit = rng.normal(0, 1.5, rows)
        y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
        champion = 1 / (1 + np.exp(-(0.6 * logit)))  # under-confident
        challenger = 1 / (1 + np.exp(-logit))
        verdicts[rows] = decide(Task.binary, _binary(champion, y), _binary(challenger, y),
                                PromotionConfig(min_improvement=0.01))
    assert verdicts[5000].promote, verdicts[5000].reason
    assert not verdicts[60].promote, verdicts[60].reason
    assert verdicts[60].reason.startswith("not better with enough evidence")


def test_the_reason_names_the_numbers_and_the_margin():
    y, champion, challenger = _label_shift(300, seed=2)
    result = decide(Task.binary, _binary(challenger, y), _binary(champion, y), PromotionConfig(min_improvement=0.02))
    assert not result.promote
    assert "required > +2.0%" in result.reason and "95% lower bound" in result.reason
    assert "log_loss" in result.reason and "accuracy" in result.reason and "300 rows" in result.reason


def test_lower_loss_with_lower_accuracy_is_rejected():
    """Better calibrated but wrong more often at the decision threshold: users see the decisions."""
    rng = np.random.default_rng(3)
    rows = 2000
    logit = rng.normal(0, 2.0, rows)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    champion = np.clip(1 / (1 + np.exp(-4 * logit)), 0.02, 0.98)  # over-confident, right side of 0.5
    challenger = 1 / (1 + np.exp(-(logit - 0.4)))  # calibrated-ish but shifted threshold
    c, n = _binary(champion, y), _binary(challenger, y)
    assert n.loss.mean() < c.loss.mean() and n.correct.mean() < c.correct.mean()
    result = decide(Task.binary, c, n, PromotionConfig())
    assert not result.promote and "max_accuracy_drop" in result.reason
    assert decide(Task.binary, c, n, PromotionConfig(max_accuracy_drop=0.2)).promote


def test_regression_uses_squared_error():
    rng = np.random.default_rng(4)
    y = rng.normal(100, 10, 1000)
    champion = y + rng.normal(5, 3, 1000)  # biased
    challenger = y + rng.normal(0, 3, 1000)
    result = decide(Task.regression, row_scores(Task.regression, y, None, champion),
                    row_scores(Task.regression, y, None, challenger), PromotionConfig(min_improvement=0.5))
    assert result.promote and result.loss_name == "squared_error" and result.champion_accuracy is None


def test_forgetting_rejects_when_configured():
    y, champion, challenger = _label_shift(400, seed=5)
    c, n = _binary(champion, y), _binary(challenger, y)
    assert decide(Task.binary, c, n, PromotionConfig(max_forgetting=0.5), forgetting=0.3).promote
    result = decide(Task.binary, c, n, PromotionConfig(max_forgetting=0.1), forgetting=0.3)
    assert not result.promote and "forgets the old data" in result.reason


def test_rows_must_pair():
    y, champion, challenger = _label_shift(100, seed=6)
    with pytest.raises(ValueError, match="same non-empty rows"):
        decide(Task.binary, _binary(champion, y), _binary(challenger[:50], y[:50]), PromotionConfig())


def test_a_conclusive_rejection_is_marked_no_gain_an_uncertain_one_is_not():
    """Equal models on many rows: even the optimistic bound misses a 1% margin (no_gain: a retrain loop
    stops). A real gain measured on too few rows: rejected, but more rows could prove it (no no_gain)."""
    rng = np.random.default_rng(8)
    logit = rng.normal(0, 1.5, 5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-logit))).astype(int)
    same = 1 / (1 + np.exp(-logit))
    equal = decide(Task.binary, _binary(same, y), _binary(same, y), PromotionConfig(min_improvement=0.01))
    assert not equal.promote and equal.no_gain and equal.reason.startswith("no gain to be had")
    assert equal.to_dict()["no_gain"] is True
    y_small, champion, challenger = _label_shift(40, seed=9)
    uncertain = decide(Task.binary, _binary(champion, y_small), _binary(challenger, y_small),
                       PromotionConfig(min_improvement=0.2))
    assert not uncertain.promote and not uncertain.no_gain, uncertain.reason
