"""The promotion gate: does a challenger beat the champion, with evidence, on the same rows?

Why not compare one ranking metric (ROC AUC) with a fixed margin, as before:
- a pure label shift (the base rate moves, the ranking does not) leaves ROC AUC where it was, so
  a challenger that fixes calibration and accuracy (0.76 vs 0.66) lost 95% of the time;
- on ~200 test rows a fixed +0.01 margin is either noise or out of reach: no test said which.

The gate scores both models on every test row with a **proper scoring loss** (log loss for
classification: it moves with ranking, calibration and the base rate alike; squared error for
regression) and runs a **paired bootstrap** over the rows: the challenger wins only if the lower
confidence bound of its relative loss reduction ``(L_champion - L_challenger) / L_champion`` is above
``min_improvement`` at ``confidence``. When even the *upper* bound is not above it, the rejection is
conclusive (``no_gain``): the rows show no gain worth a swap (a shift production already handles), and a
drift retrain stops there instead of trying again on more rows. For classification its accuracy (the thresholded decision users
see) may also not drop by more than ``max_accuracy_drop``. With ``max_forgetting`` set, the challenger
is also scored on the champion's reference sample (the old world it was trained on): its loss there may
not grow by more than that fraction (off by default: after a concept shift the old labels are wrong).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from foundry.config import PromotionConfig, Task

LOSS_NAME = {Task.binary: "log_loss", Task.multiclass: "log_loss", Task.regression: "squared_error"}
_EPS = 1e-15


@dataclass(frozen=True)
class RowScores:
    """Per-row scores of one model on a test set: its loss and (classification) whether it was right."""

    loss: np.ndarray
    correct: np.ndarray | None


def row_scores(task: Task, y_true: np.ndarray, proba: np.ndarray | None, y_pred: np.ndarray) -> RowScores:
    """``y_true``/``y_pred``: class indices (classification) or values (regression)."""
    if task is Task.regression:
        return RowScores(np.square(np.asarray(y_pred, "float64") - np.asarray(y_true, "float64")), None)
    y = np.asarray(y_true, "int64")
    p_true = np.clip(proba[np.arange(len(y)), y], _EPS, 1.0)
    return RowScores(-np.log(p_true), (np.asarray(y_pred) == y).astype("float64"))


@dataclass(frozen=True)
class GateResult:
    promote: bool
    reason: str
    loss_name: str
    rows: int
    champion_loss: float
    challenger_loss: float
    relative_improvement: float  # (champion - challenger) / champion; > 0: the challenger's loss is lower
    lower_bound: float  # of relative_improvement at `confidence`
    upper_bound: float  # at `confidence`: <= min_improvement means no retrain on these rows would be worth it
    confidence: float
    min_improvement: float
    champion_accuracy: float | None = None
    challenger_accuracy: float | None = None
    forgetting: float | None = None  # relative loss increase on the champion's reference sample

    @property
    def no_gain(self) -> bool:
        """Rejected *conclusively*: the challenger is not even plausibly better by the margin. A drift retrain
        then stops (the shift is one production already handles) instead of trying again on more rows."""
        return not self.promote and self.upper_bound <= self.min_improvement

    def to_dict(self) -> dict:
        return {**asdict(self), "no_gain": self.no_gain}


def _bootstrap_bounds(champion: np.ndarray, challenger: np.ndarray, confidence: float, samples: int,
                      seed: int) -> tuple[float, float]:
    """One-sided lower and upper bounds of sum(champion - challenger) / sum(champion) over resampled rows
    (the same rows for both models: the pairing removes the rows' own difficulty from the noise)."""
    n = len(champion)
    rng = np.random.default_rng(seed)
    stats = []
    chunk = max(1, min(samples, 2_000_000 // max(n, 1)))
    done = 0
    while done < samples:
        k = min(chunk, samples - done)
        idx = rng.integers(0, n, size=(k, n))
        base = champion[idx].sum(axis=1)
        stats.append((base - challenger[idx].sum(axis=1)) / np.maximum(base, _EPS))
        done += k
    stats = np.concatenate(stats)
    return float(np.quantile(stats, 1.0 - confidence)), float(np.quantile(stats, confidence))


def decide(task: Task, champion: RowScores, challenger: RowScores, cfg: PromotionConfig,
           forgetting: float | None = None) -> GateResult:
    """The verdict, with a reason that names the numbers it rests on (and the margin it was held to)."""
    if len(champion.loss) != len(challenger.loss) or len(champion.loss) == 0:
        raise ValueError(f"the gate needs both models scored on the same non-empty rows "
                         f"({len(champion.loss)} vs {len(challenger.loss)})")
    name = LOSS_NAME[task]
    lc, ln = float(champion.loss.mean()), float(challenger.loss.mean())
    rel = (lc - ln) / max(lc, _EPS)
    lower, upper = _bootstrap_bounds(champion.loss, challenger.loss, cfg.confidence, cfg.bootstrap_samples,
                                     cfg.gate_seed)
    acc_c = acc_n = None
    if champion.correct is not None:
        acc_c, acc_n = float(champion.correct.mean()), float(challenger.correct.mean())
    pct = f"{100 * cfg.confidence:g}%"
    numbers = (f"{name} {ln:.4f} vs {lc:.4f} ({100 * rel:+.1f}%, {pct} lower bound {100 * lower:+.1f}%, "
               f"required > {100 * cfg.min_improvement:+.1f}%) on {len(champion.loss)} rows")
    if acc_c is not None:
        numbers += f"; accuracy {acc_n:.4f} vs {acc_c:.4f}"
    promote, why = True, "better"
    if upper <= cfg.min_improvement:  # even the optimistic bound misses the margin: no gain to be had
        promote, why = False, (f"no gain to be had: even the {pct} upper bound {100 * upper:+.1f}% is not above "
                               f"the required {100 * cfg.min_improvement:+.1f}%")
    elif lower <= cfg.min_improvement:
        promote, why = False, "not better with enough evidence"
    elif acc_c is not None and acc_n < acc_c - cfg.max_accuracy_drop:
        promote, why = False, f"accuracy drops by more than max_accuracy_drop={cfg.max_accuracy_drop:g}"
    elif forgetting is not None and cfg.max_forgetting is not None and forgetting > cfg.max_forgetting:
        promote, why = False, (f"forgets the old data: {name} +{100 * forgetting:.1f}% on the champion's "
                               f"reference sample, max_forgetting={cfg.max_forgetting:g}")
    if forgetting is not None:
        numbers += f"; {name} on the champion's reference sample {100 * forgetting:+.1f}%"
    return GateResult(promote, f"{why}: challenger {numbers}", name, len(champion.loss), lc, ln, rel, lower,
                      upper, cfg.confidence, cfg.min_improvement, acc_c, acc_n, forgetting)
