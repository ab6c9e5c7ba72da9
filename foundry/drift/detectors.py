"""alibi-detect detectors built from ``conf/drift`` on a model version's reference sample.

Building is the expensive part (LSDD's kernel fit, the online detectors' threshold calibration:
seconds to minutes on CPU), testing is cheap. So the training job builds the suite once, right
after training, and stores it with the version; monitors load it. It is stored as data, never as a
pickle, so a stored suite cannot execute code: ``DETECTORS_FILE`` (JSON: config, arguments, names)
and ``DETECTOR_ARRAYS_FILE`` (safetensors: reference matrices, calibrated thresholds, fitted kernel
parameters). Loading rebuilds each detector with the stored fitted parts instead of calibrating again
(``foundry.drift.detector_store``). A pickled suite from before (``LEGACY_DETECTORS_FILE``) is never
read: such a version's monitor builds its own.
A suite records the detector config it was built from (``config_key``): a monitor started with a
different ``drift.detectors`` config builds its own instead of using a stale one.

LSDD/MMD use the torch backend. Never call ``torch.set_num_threads(k>1)`` in a process that runs
them (an MKL pivot error on CPU); ``OMP_NUM_THREADS`` from the environment is fine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from foundry.config import ConceptMethod, DriftDetectorsConfig, MultivariateMethod, OnlineMethod
from foundry.drift import features
from foundry.runtime.workdir import ensure_cwd

log = logging.getLogger(__name__)

DETECTORS_FILE = "drift_detectors.json"
DETECTOR_ARRAYS_FILE = "drift_detectors.safetensors"
DETECTOR_FILES = (DETECTORS_FILE, DETECTOR_ARRAYS_FILE)
LEGACY_DETECTORS_FILE = "drift_detectors.pkl"  # a pickled suite (older versions): never read
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


@dataclass
class DetectorSpec:
    """How one detector was built: its kind (an alibi-detect class, see ``detector_restore.KINDS``), its
    constructor arguments and the reference matrix it was given."""

    kind: str
    args: dict[str, Any]
    x_ref: np.ndarray


def config_dict(detectors: DriftDetectorsConfig) -> dict[str, Any]:
    """The detector config as plain JSON data (enums by name)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(detectors), enum_to_str=True)


def config_key(detectors: DriftDetectorsConfig) -> str:
    """A short hash of the detector config: a stored suite is used only by monitors with the same one."""
    text = json.dumps(config_dict(detectors), sort_keys=True)
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
        self.specs: dict[str, DetectorSpec] = {}  # name -> how it was built (what ``save`` stores)

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

    def place(self, name: str, det) -> None:
        """Put detector ``name`` where the ``test_*`` methods find it."""
        if name in ("concept", "online"):
            setattr(self, name, det)
        else:
            self.window[name] = det

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

    # ---- persistence: data only (``foundry.drift.detector_store``) --------------------------------------
    def save(self, directory: str | Path) -> None:
        """``DETECTOR_FILES`` in ``directory``: the suite as data (a fresh state for the online detectors)."""
        ensure_cwd()
        from foundry.drift import detector_store

        detector_store.write(self, directory)

    @staticmethod
    def load(directory: str | Path) -> DetectorSuite:
        """The suite ``save`` stored in ``directory``, rebuilt without calibrating again; everything read is
        checked first (``detector_store.DetectorFileError`` names the file and field)."""
        ensure_cwd()
        from foundry.drift import detector_store

        return detector_store.read(directory)


def _subsample(x: np.ndarray, rows: int) -> np.ndarray:
    if len(x) <= rows:
        return x
    idx = np.random.default_rng(SEED).choice(len(x), size=rows, replace=False)
    return x[np.sort(idx)]


# How often a long threshold calibration says it is still running (build_suite's progress lines).
CALIBRATION_PROGRESS_EVERY_S = 10.0


@contextlib.contextmanager
def calibration_progress(say, label: str, every_s: float = CALIBRATION_PROGRESS_EVERY_S):
    """Say ``<label>: still calibrating (N s)`` every ``every_s`` until the block ends.

    Why: an online detector's thresholds come from a bootstrap inside alibi-detect (seconds to minutes
    on a large reference sample) whose own progress is a tqdm bar, unreadable in a job log. Without a
    line, a training job looks hung at its last step."""
    stop = threading.Event()
    started = time.perf_counter()

    def beat() -> None:
        while not stop.wait(every_s):
            say(f"{label}: still calibrating ({time.perf_counter() - started:.0f} s)")

    thread = threading.Thread(target=beat, name="foundry-calibration-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def build_suite(cfg: DriftDetectorsConfig, version_dir: str | Path, version: str, say=log.info,
                progress_every_s: float = CALIBRATION_PROGRESS_EVERY_S) -> DetectorSuite:
    """Build every enabled detector on the version's reference sample (``reference.parquet``), saying what
    each costs; a threshold calibration also says every ``progress_every_s`` that it is still running."""
    ensure_cwd()
    from foundry.drift import detector_restore
    from foundry.models.predictor import REFERENCE_FILE, Predictor

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

    def add(name: str, kind: str, x_ref: np.ndarray, **args) -> None:
        started = time.perf_counter()
        label = f"      drift detector {name}"
        progress = contextlib.nullcontext()
        if args.get("n_bootstraps"):  # the online detectors calibrate their thresholds now
            say(f"{label}: calibrating {kind} thresholds on {args['n_bootstraps']:,} simulated streams of "
                f"{len(x_ref):,} reference rows (expected run time {args['ert']:g} rows between false alarms)")
            progress = calibration_progress(say, label, progress_every_s)
        with progress:
            suite.place(name, detector_restore.build(kind, x_ref, args))
        suite.specs[name] = DetectorSpec(kind, args, x_ref)
        suite.build_seconds[name] = round(time.perf_counter() - started, 3)
        say(f"      drift detector {name}: built in {suite.build_seconds[name]:.2f} s")

    if cfg.tabular.enabled:
        suite.names["tabular"] = features.tabular_names(pre)
        add("tabular", "TabularDrift", features.tabular_matrix(x_num, x_cat), p_val=float(cfg.tabular.p_val),
            correction=cfg.tabular.correction.value, categorical_columns=list(features.categorical_columns(pre)))
    if cfg.multivariate.enabled:
        m = cfg.multivariate
        add("multivariate", "LSDDDrift" if m.method is MultivariateMethod.lsdd else "MMDDrift",
            _subsample(features.dense_matrix(pre, x_num, x_cat), m.reference_rows), p_val=float(m.p_val),
            n_permutations=m.n_permutations)
    if cfg.prediction.enabled:
        pm = features.prediction_matrix(pre.task, scores)
        suite.names["prediction"] = ([f"p({c})" for c in pre.classes][-pm.shape[1]:] if pre.classes
                                     else ["prediction"])
        add("prediction", "KSDrift", pm, p_val=float(cfg.prediction.p_val))
    if cfg.concept.enabled and pre.label in reference.columns:
        c = cfg.concept
        errs = _errors(pre.task, preds.values, reference[pre.label].to_numpy())
        suite.concept_reference_error = float(errs.mean())
        if pre.task == "regression":
            add("concept", "KSDrift", errs.reshape(-1, 1).astype(np.float32), p_val=float(c.p_val))
        elif c.method is ConceptMethod.fet:
            add("concept", "FETDrift", errs.reshape(-1, 1), p_val=float(c.p_val), alternative="greater")
        else:
            add("concept", "FETDriftOnline", errs.reshape(-1, 1), ert=float(c.ert),
                window_sizes=list(c.window_sizes), n_bootstraps=c.n_bootstraps)
    if cfg.online.enabled:
        o = cfg.online
        if o.method is OnlineMethod.cvm:
            x_ref = _subsample(x_num[:, :len(pre.numeric)], o.reference_rows)
            # The per-feature thresholds are quantiles at 1 - 1/(n_features * ert): estimating them
            # needs more bootstrap streams than that (alibi-detect refuses fewer).
            needed = int(np.ceil(1.1 * x_ref.shape[1] * o.ert))
            n_boot = max(o.n_bootstraps, needed)
            if n_boot > o.n_bootstraps:
                say(f"      drift.detectors.online.n_bootstraps={o.n_bootstraps} is too few for {x_ref.shape[1]} "
                    f"features at ert={o.ert:g}; using {n_boot}")
            add("online", "CVMDriftOnline", x_ref, ert=float(o.ert), window_sizes=list(o.window_sizes),
                n_bootstraps=n_boot)
        else:
            add("online", "MMDDriftOnline", _subsample(features.dense_matrix(pre, x_num, x_cat), o.reference_rows),
                ert=float(o.ert), window_size=o.window_sizes[0], n_bootstraps=o.n_bootstraps)
    return suite


def load_or_build(cfg: DriftDetectorsConfig, version_dir: str | Path, version: str, say=log.info) -> DetectorSuite:
    """The suite stored with the version when it matches ``cfg``; otherwise build one (and say why)."""
    key = config_key(cfg)
    if (Path(version_dir) / DETECTORS_FILE).exists():
        ensure_cwd()
        from foundry.drift import detector_store

        stored = detector_store.stored_config_key(version_dir)
        if stored == key:
            return detector_store.read(version_dir)
        say(f"the detectors stored with {version} were built from another drift.detectors config "
            f"({stored} != {key}); building new ones")
    elif (Path(version_dir) / LEGACY_DETECTORS_FILE).exists():
        say(f"{version} has only a pickled detector suite ({LEGACY_DETECTORS_FILE}, from before detectors were "
            f"stored as data); it is never unpickled: building them")
    else:
        say(f"{version} has no stored detectors ({DETECTORS_FILE}); building them")
    return build_suite(cfg, version_dir, version, say)


__all__ = ["DETECTORS_FILE", "DETECTOR_ARRAYS_FILE", "DETECTOR_FILES", "LEGACY_DETECTORS_FILE", "DetectorResult",
           "DetectorSpec", "DetectorSuite", "build_suite", "config_dict", "config_key", "load_or_build"]
