"""The drift onset estimate (``foundry.drift.onset``): rows with a change at a known position, of each
kind the monitor sees (a numeric input's mean, a categorical input's frequencies, only the served
model's error rate), must put the onset there, not at the oldest row of the rows searched.

Rows are synthetic and seeded (no model needed): the estimator works on the window arrays the monitor
keeps, standardised numerics, category indices, scores and the labelled error stream.
"""

from __future__ import annotations

import numpy as np
import pytest

from foundry.drift.onset import Block, estimate, estimate_onset, since_first_flag, window_blocks

N = 2000
T0 = 1_700_000_000.0
TOLERANCE = 0.05 * N  # rows: the estimate must land within 5% of the segment of the true change


def rows(seed: int, change: int, kind: str, n: int = N, labelled: float = 0.7, batch: int = 1):
    """Window arrays with a change at row ``change`` (``kind``: none | numeric | categorical | error);
    ``batch`` rows share a timestamp, as a Serve batch does."""
    rng = np.random.default_rng(seed)
    x_num = rng.normal(size=(n, 6))
    x_num[:, 5] = rng.random(n) < 0.03  # a missing-value indicator
    cats = [rng.choice(3, n, p=[0.5, 0.3, 0.2]), rng.choice(5, n, p=[0.3, 0.25, 0.2, 0.15, 0.1]), rng.choice(4, n)]
    if kind == "numeric":
        x_num[change:, 2] += 0.75
    if kind == "categorical":
        cats[1][change:] = rng.choice(5, n - change, p=[0.1, 0.15, 0.2, 0.25, 0.3])
    p = 1 / (1 + np.exp(-(0.8 * x_num[:, 0] - 0.5 * x_num[:, 1] + 0.3 * (cats[0] == 0))))
    error_rate = np.full(n, 0.2)
    if kind == "error":
        error_rate[change:] = 0.45  # the concept moved: same inputs, same scores, more mistakes
    errors = (rng.random(n) < error_rate).astype(np.float64)
    has_label = rng.random(n) < labelled
    at = T0 + np.arange(n) // batch * 0.5
    return x_num, np.stack(cats, axis=1), np.stack([1 - p, p], axis=1), at, at[has_label], errors[has_label]


def row_of(at: np.ndarray, t: float) -> int:
    return int(np.searchsorted(at, t, side="left"))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("kind", "change", "block"), [
    ("numeric", 1300, "numeric[2]"),
    ("categorical", 700, "categorical[1]"),
    ("error", 1000, "error"),
])
def test_the_onset_is_the_change_point_of_each_kind_of_drift(kind, change, block, seed):
    x_num, x_cat, scores, at, error_at, errors = rows(seed, change, kind)
    est = estimate_onset(x_num, x_cat, scores, at, error_at, errors)
    assert est is not None and est.found and block in est.blocks
    assert abs(row_of(at, est.at) - change) <= TOLERANCE, (row_of(at, est.at), change)
    assert est.at != at.min()  # the old rule: the oldest row of the rows searched


def test_a_window_that_began_before_the_drift_is_not_taken_whole():
    """The monitor's situation: the first flagged window (the last 1,000 rows) holds 400 rows from before
    the drift; the search covers one window before it too. The old rule named the window's oldest row."""
    x_num, x_cat, scores, at, error_at, errors = rows(7, 1400, "numeric")
    first_flagged_window_from = at[-1000]
    est = estimate_onset(x_num, x_cat, scores, at, error_at, errors)
    assert est.found and abs(row_of(at, est.at) - 1400) <= TOLERANCE
    assert row_of(at, est.at) - row_of(at, first_flagged_window_from) > 300


def test_splits_fall_between_serve_batches_and_the_estimate_is_a_batch_s_time():
    x_num, x_cat, scores, at, error_at, errors = rows(3, 1200, "numeric", batch=100)
    est = estimate_onset(x_num, x_cat, scores, at, error_at, errors)
    assert est.found and est.at == at[1200]  # the first row of the first drifted batch, exactly


def test_only_the_labelled_rows_carry_the_error_stream_on_their_own_timeline():
    # 30% labelled: the error block has its own times; the change is still found from them alone.
    x_num, x_cat, scores, at, error_at, errors = rows(11, 800, "error", labelled=0.3)
    blocks = window_blocks(x_num, x_cat, scores, at, error_at, errors)
    assert [b.name for b in blocks][-2:] == ["score", "error"] and len(blocks[-1].at) < N
    est = estimate(blocks)
    assert est.blocks == ("error",) and abs(row_of(at, est.at) - 800) <= 2 * TOLERANCE


def test_stationary_rows_rarely_show_a_change():
    found = [estimate_onset(*rows(seed, 0, "none")).found for seed in range(20)]
    assert sum(found) <= 4


def test_too_few_rows_or_nothing_to_test_gives_no_estimate():
    assert estimate([]) is None
    at = T0 + np.arange(15.0)
    assert estimate([Block("x", at, np.ones((15, 1)))]) is None  # constant, and too short to split
    # A column without variance is left out; the others still decide.
    x_num, x_cat, scores, at, error_at, errors = rows(5, 1000, "numeric")
    x_num[:, 4] = 1.0
    est = estimate_onset(x_num, x_cat, scores, at, error_at, errors)
    assert est.found and abs(row_of(at, est.at) - 1000) <= TOLERANCE


def test_the_monitor_searches_one_window_before_the_first_flagged_one_and_falls_back_without_a_change():
    x_num, x_cat, scores, at, error_at, errors = rows(7, 1400, "numeric")
    labelled = list(zip(error_at, errors, strict=True))
    first_flag = float(at[1200])  # the first flagged window: rows 1200-1999 (800 rows)
    onset_at, detail = since_first_flag(x_num, x_cat, scores, at, labelled, first_flag, window_rows=800)
    assert detail["estimated"] and detail["rows_searched"] == N - 400 and detail["searched_from"] == at[400]
    assert abs(row_of(at, onset_at) - 1400) <= TOLERANCE
    # No change in the rows searched (the drift began before them): the first flagged window's oldest row.
    x_num, x_cat, scores, at, error_at, errors = rows(0, 0, "none")
    onset_at, detail = since_first_flag(x_num, x_cat, scores, at, list(zip(error_at, errors, strict=True)),
                                        float(at[1500]), window_rows=500)
    assert not detail["estimated"] and onset_at == at[1500]
