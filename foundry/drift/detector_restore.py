"""Rebuilding alibi-detect detectors from stored arguments and fitted arrays, without calibrating again.

A stored suite (``foundry.drift.detector_store``) keeps each detector's constructor arguments and
the arrays its constructor fitted. Built from those with its plain alibi-detect class, a detector
would run its calibration again (the online detectors' threshold bootstrap: seconds to minutes) and
its random draws (MMDDriftOnline's split of the reference, LSDD's kernel centers), so a loaded suite
would neither be quick to load nor give the results of the one saved. The ``_Stored*`` subclasses
here replace just those fitting steps with the stored arrays; everything else (kernel matrices,
LSDD's normalisation, the test state) is still computed by alibi-detect from the reference, which is
cheap and deterministic. What each one takes from the file:

- ``_StoredRBF``: alibi-detect's GaussianRBF kernel with the stored bandwidth ``log_sigma``, never
  inferred from data again (used by LSDDDrift, MMDDrift and MMDDriftOnline);
- ``_StoredCVMDriftOnline``: ``thresholds`` instead of the bootstrap;
- ``_StoredFETDriftOnline``: ``thresholds`` and ``permit_probs`` instead of the bootstrap;
- ``_StoredMMDDriftOnline`` (around ``_StoredMMDDriftOnlineTorch``): the kernel's ``log_sigma``,
  ``thresholds`` instead of the bootstrap, and the random split of the reference (``ref_inds``,
  ``init_test_inds``), from which the initial test window and reference sums are recomputed;
- ``_StoredLSDDDrift`` (around ``_StoredLSDDDriftTorch``): the kernel's ``log_sigma`` and the
  randomly drawn ``kernel_centers`` with their kernel to the rest of the reference (``k_xc``).

MMDDrift needs no subclass (only its kernel is stored); TabularDrift, KSDrift and FETDrift fit
nothing and are simply built again. The subclasses override alibi-detect's internal hooks
(``_configure_thresholds``, ``_configure_ref_subset``, ``_initialize_kernel``,
``_configure_kernel_centers``): they are written against the pinned alibi-detect version.

``KINDS`` is the fixed table of the kinds a suite may hold (each an alibi-detect class): their
arguments, how each is built (``build``, ``kind_for``), which arrays it fitted, what shapes
``detector_store.read`` requires of them, and how it is restored. ``ARGS`` says what each argument
must be. A problem with one field raises ``BadField``; ``detector_store`` adds the file. This module
does not import ``detector_store`` (which imports it).

It imports alibi-detect and torch: ``foundry.drift.detectors`` imports it only when a suite is built,
saved or loaded. alibi-detect is imported without ``transformers`` (``foundry.drift.alibi_imports``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from foundry.config import ConceptMethod, DriftDetectorsConfig, Task
from foundry.drift.alibi_imports import transformers_deferred

with transformers_deferred():  # alibi-detect imports transformers for text models Foundry never uses
    from alibi_detect.cd import (
        CVMDriftOnline,
        FETDrift,
        FETDriftOnline,
        KSDrift,
        LSDDDrift,
        MMDDrift,
        MMDDriftOnline,
        TabularDrift,
    )
    from alibi_detect.cd.pytorch.lsdd import LSDDDriftTorch
    from alibi_detect.cd.pytorch.mmd_online import MMDDriftOnlineTorch
    from alibi_detect.utils.pytorch import zero_diag
    from alibi_detect.utils.pytorch.kernels import GaussianRBF

# ---- fitted parts from the file instead of fitting them again --------------------------------------------


class _StoredRBF(GaussianRBF):
    """alibi-detect's Gaussian kernel with a stored bandwidth: never re-inferred from data."""

    def __init__(self, log_sigma: np.ndarray):
        super().__init__()
        self.log_sigma = torch.nn.Parameter(torch.from_numpy(log_sigma.copy()), requires_grad=False)
        self.init_required = False

    def forward(self, x, y, infer_sigma: bool = False) -> torch.Tensor:
        return super().forward(x, y, infer_sigma=False)


class _StoredCVMDriftOnline(CVMDriftOnline):
    def __init__(self, x_ref: np.ndarray, fitted: dict[str, np.ndarray], **kwargs):
        self._fitted = fitted
        super().__init__(x_ref, **kwargs)
        del self._fitted

    def _configure_thresholds(self) -> None:  # instead of the bootstrap
        self.thresholds = self._fitted["thresholds"].copy()


class _StoredFETDriftOnline(FETDriftOnline):
    def __init__(self, x_ref: np.ndarray, fitted: dict[str, np.ndarray], **kwargs):
        self._fitted = fitted
        super().__init__(x_ref, **kwargs)
        del self._fitted

    def _configure_thresholds(self) -> None:  # instead of the bootstrap
        self.thresholds = self._fitted["thresholds"].copy()
        self.permit_probs = self._fitted["permit_probs"].copy()


class _StoredMMDDriftOnlineTorch(MMDDriftOnlineTorch):
    def __init__(self, x_ref: np.ndarray, fitted: dict[str, np.ndarray], **kwargs):
        self._fitted = fitted
        super().__init__(x_ref, kernel=_StoredRBF(fitted["log_sigma"]), **kwargs)
        del self._fitted

    def _configure_thresholds(self) -> None:  # instead of the bootstrap
        self.thresholds = [float(t) for t in self._fitted["thresholds"]]

    def _configure_ref_subset(self) -> None:
        """alibi-detect draws this split at random; the stored one, and the same sums from it."""
        rw_size = self.n - (2 * self.window_size - 1)
        self.ref_inds = torch.from_numpy(self._fitted["ref_inds"].copy())
        self.init_test_inds = torch.from_numpy(self._fitted["init_test_inds"].copy())
        self._initialise_state()  # test_window and k_xy from init_test_inds
        self.k_xx_sub = self.k_xx[self.ref_inds][:, self.ref_inds]
        self.k_xx_sub_sum = zero_diag(self.k_xx_sub).sum() / (rw_size * (rw_size - 1))


class _StoredMMDDriftOnline(MMDDriftOnline):
    """The backend wrapper around ``_StoredMMDDriftOnlineTorch`` (alibi-detect's builds its own class)."""

    def __init__(self, x_ref: np.ndarray, fitted: dict[str, np.ndarray], **kwargs):
        self._detector = _StoredMMDDriftOnlineTorch(x_ref, fitted, **kwargs)
        self.meta = self._detector.meta
        self._set_config({"x_ref": x_ref, "backend": "pytorch", **kwargs})


class _StoredLSDDDriftTorch(LSDDDriftTorch):
    def __init__(self, x_ref: np.ndarray, fitted: dict[str, np.ndarray], **kwargs):
        self._fitted = fitted
        super().__init__(x_ref, **kwargs)
        del self._fitted

    def _initialize_kernel(self, x_ref: torch.Tensor) -> None:
        self.kernel = _StoredRBF(self._fitted["log_sigma"])

    def _configure_kernel_centers(self, x_ref: torch.Tensor) -> None:  # alibi-detect draws them at random
        self.kernel_centers = torch.from_numpy(self._fitted["kernel_centers"].copy()).to(self.device)
        self.k_xc = torch.from_numpy(self._fitted["k_xc"].copy()).to(self.device)


class _StoredLSDDDrift(LSDDDrift):
    """The backend wrapper around ``_StoredLSDDDriftTorch`` (alibi-detect's builds its own class)."""

    def __init__(self, x_ref: np.ndarray, fitted: dict[str, np.ndarray], **kwargs):
        self._detector = _StoredLSDDDriftTorch(x_ref, fitted, **kwargs)
        self.meta = self._detector.meta
        self._set_config({"x_ref": x_ref, "backend": "pytorch", **kwargs})


def _array(t) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


# ---- the kinds: how each detector is built, stored and rebuilt ---------------------------------------------


class BadField(Exception):
    """A problem with one field; ``read`` adds the file."""

    def __init__(self, field: str, problem: str):
        super().__init__(field, problem)
        self.field, self.problem = field, problem


def _p_val(v):
    return isinstance(v, float) and 0 < v < 1


def _positive_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _ert(v):
    return isinstance(v, float) and math.isfinite(v) and v > 1


def _window_sizes(v):
    return isinstance(v, list) and len(v) >= 1 and all(_positive_int(w) for w in v)


ARGS: dict[str, tuple[Callable[[Any], bool], str]] = {  # argument -> (check, what it must be)
    "p_val": (_p_val, "a float in (0, 1)"),
    "n_permutations": (_positive_int, "a positive int"),
    "n_bootstraps": (_positive_int, "a positive int"),
    "window_size": (_positive_int, "a positive int"),
    "window_sizes": (_window_sizes, "a non-empty list of positive ints"),
    "ert": (_ert, "a float > 1"),
    "correction": (lambda v: v in ("bonferroni", "fdr"), "'bonferroni' or 'fdr'"),
    "alternative": (lambda v: v in ("greater", "less"), "'greater' or 'less'"),
    "categorical_columns": (lambda v: isinstance(v, list) and all(isinstance(c, int) and not isinstance(c, bool)
                                                                 for c in v), "a list of ints"),
}


@dataclasses.dataclass(frozen=True)
class Kind:
    args: tuple[str, ...]
    build: Callable[[np.ndarray, dict], Any]  # the detector, fitted by alibi-detect
    fitted: Callable[[Any], dict[str, np.ndarray]] = lambda det: {}  # what its constructor fitted
    # (x_ref, args) -> fitted array name -> (dtype kinds, shape): what ``read`` requires of the file
    expect: Callable[[np.ndarray, dict], dict[str, tuple[str, tuple[int, ...]]]] = lambda x, a: {}
    restore: Callable[[np.ndarray, dict, dict], Any] | None = None  # rebuilt with ``fitted``; None: ``build``


def _tabular(x: np.ndarray, a: dict) -> TabularDrift:
    columns = a["categorical_columns"]
    if len(set(columns)) != len(columns) or not all(0 <= c < x.shape[1] for c in columns):
        raise BadField("args.categorical_columns", f"must be distinct columns of the {x.shape[1]}-column reference")
    return TabularDrift(x, p_val=a["p_val"], categories_per_feature={c: None for c in columns},
                        correction=a["correction"])


def _lsdd_expect(x: np.ndarray, a: dict) -> dict:
    centers = max(len(x) // 20, 1)  # alibi-detect's default n_kernel_centers
    return {"log_sigma": ("f", (1,)), "kernel_centers": ("f", (centers, x.shape[1])),
            "k_xc": ("f", (len(x) - centers, centers))}


def _mmd_online_expect(x: np.ndarray, a: dict) -> dict:
    ws = a["window_size"]
    if len(x) < 2 * ws + 1:
        raise BadField("args.window_size", f"{ws} needs a reference of > {2 * ws} rows, not {len(x)}")
    return {"log_sigma": ("f", (1,)), "thresholds": ("f", (ws,)), "ref_inds": ("i", (len(x) - 2 * ws + 1,)),
            "init_test_inds": ("i", (ws,))}


def _t_max(a: dict) -> int:
    return 2 * max(a["window_sizes"]) - 1


KINDS: dict[str, Kind] = {
    "TabularDrift": Kind(args=("p_val", "correction", "categorical_columns"), build=_tabular),
    "KSDrift": Kind(args=("p_val",), build=lambda x, a: KSDrift(x, **a)),
    "FETDrift": Kind(args=("p_val", "alternative"), build=lambda x, a: FETDrift(x, **a)),
    "LSDDDrift": Kind(
        args=("p_val", "n_permutations"),
        build=lambda x, a: LSDDDrift(x, backend="pytorch", **a),
        fitted=lambda d: {"log_sigma": _array(d._detector.kernel.log_sigma),
                          "kernel_centers": _array(d._detector.kernel_centers), "k_xc": _array(d._detector.k_xc)},
        expect=_lsdd_expect,
        restore=lambda x, a, f: _StoredLSDDDrift(x, f, **a)),
    "MMDDrift": Kind(
        args=("p_val", "n_permutations"),
        build=lambda x, a: MMDDrift(x, backend="pytorch", **a),
        fitted=lambda d: {"log_sigma": _array(d._detector.kernel.log_sigma)},
        expect=lambda x, a: {"log_sigma": ("f", (1,))},
        restore=lambda x, a, f: MMDDrift(x, backend="pytorch", kernel=_StoredRBF(f["log_sigma"]), **a)),
    "FETDriftOnline": Kind(
        args=("ert", "window_sizes", "n_bootstraps"),
        build=lambda x, a: FETDriftOnline(x, verbose=False, **a),
        fitted=lambda d: {"thresholds": d.thresholds.copy(), "permit_probs": d.permit_probs.copy()},
        expect=lambda x, a: {"thresholds": ("f", (_t_max(a), x.shape[1])),
                             "permit_probs": ("f", (_t_max(a), x.shape[1]))},
        restore=lambda x, a, f: _StoredFETDriftOnline(x, f, verbose=False, **a)),
    "CVMDriftOnline": Kind(
        args=("ert", "window_sizes", "n_bootstraps"),
        build=lambda x, a: CVMDriftOnline(x, verbose=False, **a),
        fitted=lambda d: {"thresholds": d.thresholds.copy()},
        expect=lambda x, a: {"thresholds": ("f", (_t_max(a), 1))},
        restore=lambda x, a, f: _StoredCVMDriftOnline(x, f, verbose=False, **a)),
    "MMDDriftOnline": Kind(
        args=("ert", "window_size", "n_bootstraps"),
        build=lambda x, a: MMDDriftOnline(x, backend="pytorch", verbose=False, **a),
        fitted=lambda d: {"log_sigma": _array(d._detector.kernel.log_sigma),
                          "thresholds": np.asarray(d._detector.thresholds, dtype=np.float64),
                          "ref_inds": _array(d._detector.ref_inds),
                          "init_test_inds": _array(d._detector.init_test_inds)},
        expect=_mmd_online_expect,
        restore=lambda x, a, f: _StoredMMDDriftOnline(x, f, verbose=False, **a)),
}


def kind_for(name: str, cfg: DriftDetectorsConfig, task: str) -> str:
    """The kind ``build_suite`` builds for detector ``name`` under ``cfg``."""
    if name == "tabular":
        return "TabularDrift"
    if name == "multivariate":
        return {"lsdd": "LSDDDrift", "mmd": "MMDDrift"}[cfg.multivariate.method.value]
    if name == "prediction" or (name == "concept" and task == Task.regression.value):
        return "KSDrift"
    if name == "concept":
        return "FETDriftOnline" if cfg.concept.method is ConceptMethod.fet_online else "FETDrift"
    return {"cvm": "CVMDriftOnline", "mmd": "MMDDriftOnline"}[cfg.online.method.value]


def build(kind: str, x_ref: np.ndarray, args: dict) -> Any:
    return KINDS[kind].build(x_ref, args)


__all__ = ["ARGS", "KINDS", "BadField", "Kind", "build", "kind_for"]
