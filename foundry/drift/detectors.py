"""alibi-detect detectors built from ``conf/drift`` on a model version's reference sample.

Building is the expensive part (LSDD's kernel fit, the online detectors' threshold calibration:
seconds to minutes on CPU), testing is cheap. So the training job builds the suite once, right
after training, and stores it with the version (``DETECTORS_FILE``); monitors load it. The file is
a pickle (alibi-detect's own ``save_detector``/``load_detector`` re-runs the constructor, and so the
calibration); it is only ever loaded from a registry version whose every file was checked against
the sha256 in its manifest (``Registry.fetch``), i.e. it is trusted exactly as much as the registry.
A suite records the detector config it was built from (``config_key``): a monitor started with a
different ``drift.detectors`` config builds its own instead of using a stale one.

LSDD/MMD use the torch backend. Never call ``torch.set_num_threads(k>1)`` in a process that runs
them (an MKL pivot error on CPU); ``OMP_NUM_THREADS`` from the environment is fine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd

from foundry.config import ConceptMethod, DriftDetectorsConfig, MultivariateMethod, OnlineMethod
from foundry.drift import features
from foundry.predictor import REFERENCE_FILE
from foundry.workdir import ensure_cwd

log = logging.getLogger(__name__)

DETECTORS_FILE = "drift_detectors.pkl"
SEED = 0


@dataclass
class DetectorResult:
    detector: str
    drift: bool
    p_value: float | None
    statistic: float | None
    threshold: float | None
    vote: bool
    rows: int
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_key(detectors: DriftDetectorsConfig) -> str:
    """A short hash of the detector config: a stored suite is used only by monitors with the same one."""
    from omegaconf import OmegaConf

    text = json.dumps(OmegaConf.to_container(OmegaConf.structured(detectors), enum_to_str=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _floats(value) -> np.ndarray:
    return np.atleast_1d(np.asarray(value, dtype=np.float64))


def _max_finite(value) -> float | None:
    """The largest finite entry (online statistics are NaN until a window is full), or None."""
    if value is None:
        return None
    finite = _floats(value)
    finite = finite[np.isfinite(finite)]
    return float(finite.max()) if len(finite) else None


def _errors(task: str, predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """The error stream: 0/1 misclassification, or the absolute error for regression."""
    if task == "regression":
        return np.abs(np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64))
    return (np.asarray(predicted).astype(str) != np.asarray(actual).astype(str)).astype(np.int64)


class DetectorSuite:
    """Every enabled detector of one version; ``test_*`` return one ``DetectorResult`` each."""

    def __init__(self, version: str, key: str, task: str, cfg: DriftDetectorsConfig, pre_json: str):
        self.version = version
        self.config_key = key
        self.task = task
        self.cfg = cfg
        self.pre_json = pre_json
        self.window: dict[str, Any] = {}  # name -> windowed alibi detector
        self.names: dict[str, list[str]] = {}  # name -> the tested columns' names
        self.concept: Any = None
        self.concept_reference_error: float | None = None
        self.online: Any = None
        self.build_seconds: dict[str, float] = {}

    @property
    def preprocessor(self):
        from foundry.data.preprocessor import Preprocessor

        if not hasattr(self, "_pre"):
            self._pre = Preprocessor.from_json(self.pre_json)
        return self._pre

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_pre", None)
        return state

    # ---- windowed tests ---------------------------------------------------------------------------
    def test_window(self, x_num: np.ndarray, x_cat: np.ndarray, scores: np.ndarray) -> list[DetectorResult]:
        out = []
        rows = len(x_num)
        for name, det in self.window.items():
            if name == "tabular":
                x = features.tabular_matrix(x_num, x_cat)
            elif name == "multivariate":
                x = features.dense_matrix(self.preprocessor, x_num, x_cat)
            else:
                x = features.prediction_matrix(self.task, scores)
            out.append(self._result(name, det.predict(x), rows))
        return out

    def _result(self, name: str, pred: dict, rows: int) -> DetectorResult:
        data = pred["data"]
        p = _floats(data["p_val"])
        dist = _floats(data["distance"])
        threshold = data.get("threshold")
        if threshold is not None and np.ndim(threshold) > 0:
            # FDR correction without a discovery: alibi-detect returns every rank's cutoff (q * i / n);
            # the smallest p-value, the one reported, is judged against the first.
            threshold = float(np.min(threshold))
        detail: dict[str, Any] = {}
        if len(p) > 1 and threshold is not None:
            detail["drifted_columns"] = [n for n, pv in zip(self.names.get(name, []), p, strict=False)
                                         if pv < float(threshold)]
        return DetectorResult(detector=name, drift=bool(data["is_drift"]), p_value=float(p.min()),
                              statistic=float(dist.max()), threshold=None if threshold is None else float(threshold),
                              vote=getattr(self.cfg, name).vote, rows=rows, detail=detail)

    # ---- concept drift from labels ---------------------------------------------------------------
    def errors(self, predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
        return _errors(self.task, predicted, actual)

    def test_concept(self, errors: np.ndarray) -> DetectorResult | None:
        """Windowed: one test on ``errors`` (the latest labelled window). Online: feed every row."""
        if self.concept is None or len(errors) == 0:
            return None
        rate = float(np.mean(errors))
        detail = {"error_rate": rate, "reference_error_rate": self.concept_reference_error}
        if self.cfg.concept.method is ConceptMethod.fet_online:
            return self._feed_online("concept", self.concept, errors.reshape(-1, 1).astype(np.float32), detail)
        result = self._result("concept", self.concept.predict(errors.reshape(-1, 1)), len(errors))
        result.detail.update(detail)
        return result

    # ---- online detection on features -------------------------------------------------------------
    def update_online(self, x_num: np.ndarray, x_cat: np.ndarray) -> DetectorResult | None:
        if self.online is None or len(x_num) == 0:
            return None
        if self.cfg.online.method is OnlineMethod.cvm:
            x = x_num[:, :len(self.preprocessor.numeric)].astype(np.float32)
        else:
            x = features.dense_matrix(self.preprocessor, x_num, x_cat)
        return self._feed_online("online", self.online, x, {})

    def _feed_online(self, name: str, det, x: np.ndarray, detail: dict) -> DetectorResult:
        drift_at = None
        stat = None
        threshold = None
        for i in range(len(x)):
            data = det.predict(x[i], return_test_stat=True)["data"]
            stat = _max_finite(data.get("test_stat"))
            threshold = _max_finite(data.get("threshold"))
            if data["is_drift"]:
                drift_at = i
                break
        detail = {**detail, "t": int(det.t)}
        if drift_at is not None:
            detail["drift_at_row"] = drift_at
            det.reset_state()  # an online detector keeps flagging after a detection until reset
        cfg = getattr(self.cfg, name)
        return DetectorResult(detector=name, drift=drift_at is not None, p_value=None, statistic=stat,
                              threshold=threshold, vote=cfg.vote, rows=len(x), detail=detail)

    def reset_online(self) -> None:
        for det in (self.online, self.concept if self.cfg.concept.method is ConceptMethod.fet_online else None):
            if det is not None:
                det.reset_state()

    # ---- persistence --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(cloudpickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))

    @staticmethod
    def load(path: str | Path) -> DetectorSuite:
        """Only for files from ``Registry.fetch`` (checksums verified): see the module docstring."""
        suite = pickle.loads(Path(path).read_bytes())  # noqa: S301 -- integrity-checked registry file
        if not isinstance(suite, DetectorSuite):
            raise TypeError(f"{path} does not hold a DetectorSuite")
        return suite


def _subsample(x: np.ndarray, rows: int) -> np.ndarray:
    if len(x) <= rows:
        return x
    idx = np.random.default_rng(SEED).choice(len(x), size=rows, replace=False)
    return x[np.sort(idx)]


def build_suite(cfg: DriftDetectorsConfig, version_dir: str | Path, version: str, say=log.info) -> DetectorSuite:
    """Build every enabled detector on the version's reference sample (``reference.parquet``)."""
    ensure_cwd()
    from alibi_detect.cd import FETDrift, KSDrift, TabularDrift

    from foundry.predictor import Predictor

    version_dir = Path(version_dir)
    predictor = Predictor.from_dir(version_dir)
    pre = predictor.preprocessor
    reference = pd.read_parquet(version_dir / REFERENCE_FILE)
    if len(reference) < 50:
        raise ValueError(f"the reference sample of {version} has {len(reference)} rows; drift tests need >= 50")
    encoded = pre.transform(reference)
    x_num, x_cat = encoded["x_num"], encoded["x_cat"]
    preds = predictor.predict(reference)
    scores = preds.proba if preds.proba is not None else preds.values
    suite = DetectorSuite(version, config_key(cfg), pre.task, cfg, pre.to_json())

    def timed(name: str, make):
        started = time.perf_counter()
        det = make()
        suite.build_seconds[name] = round(time.perf_counter() - started, 3)
        say(f"      drift detector {name}: built in {suite.build_seconds[name]:.2f} s")
        return det

    if cfg.tabular.enabled:
        suite.names["tabular"] = features.tabular_names(pre)
        suite.window["tabular"] = timed("tabular", lambda: TabularDrift(
            features.tabular_matrix(x_num, x_cat), p_val=cfg.tabular.p_val,
            categories_per_feature=features.categorical_columns(pre), correction=cfg.tabular.correction.value))
    if cfg.multivariate.enabled:
        dense = _subsample(features.dense_matrix(pre, x_num, x_cat), cfg.multivariate.reference_rows)
        if cfg.multivariate.method is MultivariateMethod.lsdd:
            from alibi_detect.cd import LSDDDrift

            make = lambda: LSDDDrift(dense, backend="pytorch", p_val=cfg.multivariate.p_val,  # noqa: E731
                                     n_permutations=cfg.multivariate.n_permutations)
        else:
            from alibi_detect.cd import MMDDrift

            make = lambda: MMDDrift(dense, backend="pytorch", p_val=cfg.multivariate.p_val,  # noqa: E731
                                    n_permutations=cfg.multivariate.n_permutations)
        suite.window["multivariate"] = timed("multivariate", make)
    if cfg.prediction.enabled:
        pm = features.prediction_matrix(pre.task, scores)
        suite.names["prediction"] = ([f"p({c})" for c in pre.classes][-pm.shape[1]:] if pre.classes
                                     else ["prediction"])
        suite.window["prediction"] = timed("prediction", lambda: KSDrift(pm, p_val=cfg.prediction.p_val))
    if cfg.concept.enabled and pre.label in reference.columns:
        errs = _errors(pre.task, preds.values, reference[pre.label].to_numpy())
        suite.concept_reference_error = float(errs.mean())
        if pre.task == "regression":
            suite.concept = timed("concept", lambda: KSDrift(errs.reshape(-1, 1).astype(np.float32),
                                                             p_val=cfg.concept.p_val))
        elif cfg.concept.method is ConceptMethod.fet:
            suite.concept = timed("concept", lambda: FETDrift(errs.reshape(-1, 1), p_val=cfg.concept.p_val,
                                                              alternative="greater"))
        else:
            from alibi_detect.cd import FETDriftOnline

            suite.concept = timed("concept", lambda: FETDriftOnline(
                errs.reshape(-1, 1), ert=cfg.concept.ert, window_sizes=list(cfg.concept.window_sizes),
                n_bootstraps=cfg.concept.n_bootstraps, verbose=False))
    if cfg.online.enabled:
        o = cfg.online
        if o.method is OnlineMethod.cvm:
            from alibi_detect.cd import CVMDriftOnline

            x_ref = _subsample(x_num[:, :len(pre.numeric)], o.reference_rows)
            # The per-feature thresholds are quantiles at 1 - 1/(n_features * ert): estimating them
            # needs more bootstrap streams than that (alibi-detect refuses fewer).
            needed = int(np.ceil(1.1 * x_ref.shape[1] * o.ert))
            n_boot = max(o.n_bootstraps, needed)
            if n_boot > o.n_bootstraps:
                say(f"      drift.detectors.online.n_bootstraps={o.n_bootstraps} is too few for {x_ref.shape[1]} "
                    f"features at ert={o.ert:g}; using {n_boot}")
            suite.online = timed("online", lambda: CVMDriftOnline(
                x_ref, ert=o.ert, window_sizes=list(o.window_sizes), n_bootstraps=n_boot, verbose=False))
        else:
            from alibi_detect.cd import MMDDriftOnline

            x_ref = _subsample(features.dense_matrix(pre, x_num, x_cat), o.reference_rows)
            suite.online = timed("online", lambda: MMDDriftOnline(
                x_ref, ert=o.ert, window_size=o.window_sizes[0], backend="pytorch", n_bootstraps=o.n_bootstraps,
                verbose=False))
    return suite


def load_or_build(cfg: DriftDetectorsConfig, version_dir: str | Path, version: str, say=log.info) -> DetectorSuite:
    """The suite stored with the version when it matches ``cfg``; otherwise build one (and say why)."""
    ensure_cwd()  # unpickling imports alibi-detect too
    path = Path(version_dir) / DETECTORS_FILE
    key = config_key(cfg)
    if path.exists():
        suite = DetectorSuite.load(path)
        if suite.config_key == key:
            return suite
        say(f"the detectors stored with {version} were built from another drift.detectors config "
            f"({suite.config_key} != {key}); building new ones")
    else:
        say(f"{version} has no stored detectors ({DETECTORS_FILE}); building them")
    return build_suite(cfg, version_dir, version, say)


__all__ = ["DETECTORS_FILE", "DetectorResult", "DetectorSuite", "build_suite", "config_key", "load_or_build"]
