"""The matrices the detectors test, derived from the preprocessor's encoding of a batch.

Detectors look at what the model looks at: standardised numerics (imputed, with missing-value
indicators) and category indices from the same ``Preprocessor`` the version was trained with, so a
new category or a null-rate change is visible exactly as the model receives it.

- ``tabular``: one column per encoded input; numerics are tested with KS, category indices and the
  0/1 missing indicators with chi-square (``categories_per_feature`` says which is which);
- ``dense``: standardised numerics plus one-hot categories, for the kernel (LSDD/MMD) tests,
  where an integer code would impose a meaningless order.
"""

from __future__ import annotations

import numpy as np

from foundry.data.preprocessor import Preprocessor


def tabular_matrix(x_num: np.ndarray, x_cat: np.ndarray) -> np.ndarray:
    return np.concatenate([x_num.astype(np.float32), x_cat.astype(np.float32)], axis=1)


def categorical_columns(pre: Preprocessor) -> dict[int, None]:
    """The chi-square columns of ``tabular_matrix`` (missing indicators and category indices).

    ``None`` lets alibi-detect take the categories present in the reference and count a test window
    over the union of both: a category absent from both would be an all-zero column, which
    chi-square cannot take, while one new in the window (e.g. the unknown index) shows as drift.
    """
    return {i: None for i in range(len(pre.numeric), pre.numeric_width + len(pre.categorical))}


def tabular_names(pre: Preprocessor) -> list[str]:
    return ([n.name for n in pre.numeric] + [f"{n.name}__missing" for n in pre.numeric if n.add_missing_indicator]
            + [c.name for c in pre.categorical])


def dense_matrix(pre: Preprocessor, x_num: np.ndarray, x_cat: np.ndarray) -> np.ndarray:
    parts = [x_num.astype(np.float32)]
    for j, card in enumerate(pre.cardinalities):
        onehot = np.zeros((len(x_cat), card), dtype=np.float32)
        onehot[np.arange(len(x_cat)), np.clip(x_cat[:, j], 0, card - 1)] = 1.0
        parts.append(onehot)
    return np.concatenate(parts, axis=1)


def prediction_matrix(task: str, scores: np.ndarray) -> np.ndarray:
    """The model-output columns tested for prediction drift: P(positive) for binary (the other
    column is redundant), every class probability for multiclass, the value for regression."""
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim == 1:
        scores = scores[:, None]
    if task == "binary" and scores.shape[1] == 2:
        return scores[:, 1:2]
    return scores
