"""A ``DetectorSuite`` on disk as data only: a JSON file and a safetensors file, never a pickle.

``drift_detectors.json`` (``DETECTORS_FILE``) holds everything that is not an array: the format, the
version, task, detector config and its ``config_key``, the preprocessor (its own JSON), the tested
columns' names, build times, the concept reference error rate, the name and sha256 of the arrays file,
and per detector its kind (one of the fixed ``KINDS``, each an alibi-detect class) and its constructor
arguments. ``drift_detectors.safetensors`` (``DETECTOR_ARRAYS_FILE``) holds the arrays, named
``<detector>/<field>``: each detector's reference matrix (``x_ref``) and what its constructor fitted:

- the online detectors' thresholds, calibrated by bootstrap (seconds to minutes): CVMDriftOnline's and
  FETDriftOnline's ``thresholds`` (and FETDriftOnline's ``permit_probs``), MMDDriftOnline's ``thresholds``
  with its random split of the reference (``ref_inds``, ``init_test_inds``);
- the kernel bandwidth of LSDD/MMD (``log_sigma`` of the GaussianRBF kernel, inferred from the reference);
- LSDD's randomly drawn kernel centers and their kernel with the rest of the reference (``kernel_centers``,
  ``k_xc``).

``read`` rebuilds each detector with its alibi-detect constructor on the stored reference, with those
fitted parts taken from the file instead of being fitted again (the ``_Stored*`` subclasses below replace
just the fitting steps), so a loaded suite gives the same results as the one saved and never
recalibrates. The rest (TabularDrift, KSDrift, FETDrift, LSDD's normalisation, kernel matrices) is
recomputed from the reference: cheap and deterministic.

Nothing read names code: a kind is looked up in ``KINDS``, never imported. Everything is checked
before a detector is built (types, ranges, the arrays' names, dtypes and shapes against the
arguments and the config); a file that fails says which file and field (``DetectorFileError``).

This module imports alibi-detect and torch: ``foundry.drift.detectors`` imports it only when a suite
is built, saved or loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
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
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from foundry.config import ConceptMethod, DriftDetectorsConfig, Task
from foundry.drift.detectors import (
    DETECTOR_ARRAYS_FILE,
    DETECTORS_FILE,
    DetectorSpec,
    DetectorSuite,
    config_dict,
    config_key,
)

FORMAT = 1
SLOTS = ("tabular", "multivariate", "prediction", "concept", "online")


class DetectorFileError(ValueError):
    """A stored suite that is not what ``write`` writes: names the file and the field."""

    def __init__(self, path: Path, field: str, problem: str):
        super().__init__(f"{path}: {field}: {problem}")
        self.path, self.field, self.problem = path, field, problem


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


class _Bad(Exception):
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
        raise _Bad("args.categorical_columns", f"must be distinct columns of the {x.shape[1]}-column reference")
    return TabularDrift(x, p_val=a["p_val"], categories_per_feature={c: None for c in columns},
                        correction=a["correction"])


def _lsdd_expect(x: np.ndarray, a: dict) -> dict:
    centers = max(len(x) // 20, 1)  # alibi-detect's default n_kernel_centers
    return {"log_sigma": ("f", (1,)), "kernel_centers": ("f", (centers, x.shape[1])),
            "k_xc": ("f", (len(x) - centers, centers))}


def _mmd_online_expect(x: np.ndarray, a: dict) -> dict:
    ws = a["window_size"]
    if len(x) < 2 * ws + 1:
        raise _Bad("args.window_size", f"{ws} needs a reference of > {2 * ws} rows, not {len(x)}")
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


# ---- writing ----------------------------------------------------------------------------------------------


def _detector(suite: DetectorSuite, name: str) -> Any:
    return suite.window.get(name) if name in suite.window else getattr(suite, name)


def write(suite: DetectorSuite, directory: str | Path) -> None:
    """``DETECTORS_FILE`` and ``DETECTOR_ARRAYS_FILE`` in ``directory`` (the arrays first)."""
    directory = Path(directory)
    arrays: dict[str, np.ndarray] = {}
    detectors: dict[str, dict] = {}
    for name, spec in suite.specs.items():
        arrays[f"{name}/x_ref"] = spec.x_ref
        for key, value in KINDS[spec.kind].fitted(_detector(suite, name)).items():
            arrays[f"{name}/{key}"] = value
        detectors[name] = {"kind": spec.kind, "args": spec.args}
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, directory / DETECTOR_ARRAYS_FILE)
    header = {
        "format": FORMAT, "version": suite.version, "config_key": suite.config_key, "task": suite.task,
        "config": config_dict(suite.cfg), "pre_json": suite.pre_json, "names": suite.names,
        "build_seconds": suite.build_seconds, "concept_reference_error": suite.concept_reference_error,
        "arrays": {"file": DETECTOR_ARRAYS_FILE, "sha256": _sha256(directory / DETECTOR_ARRAYS_FILE)},
        "detectors": detectors,
    }
    (directory / DETECTORS_FILE).write_text(json.dumps(header, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- reading ----------------------------------------------------------------------------------------------

HEADER = ("format", "version", "config_key", "task", "config", "pre_json", "names", "build_seconds",
          "concept_reference_error", "arrays", "detectors")


def _keys(obj: Any, keys, where: str, optional=()) -> dict:
    if not isinstance(obj, dict):
        raise _Bad(where, f"expected an object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj and k not in optional]
    extra = sorted(set(obj) - set(keys))
    if missing or extra:
        raise _Bad(where, f"missing {missing}" if missing else f"unexpected {extra}")
    return obj


def _typed(value: Any, types: type | tuple, where: str) -> Any:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        raise _Bad(where, f"expected {' or '.join(t.__name__ for t in types)}, got {type(value).__name__}")
    return value


def _config(cls, raw: Any, where: str):
    """``raw`` as the dataclass ``cls`` (nested dataclasses, enums by name, bool/int/float/list[int])."""
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    _keys(raw, fields, where)
    values = {}
    for name in fields:
        t, v, at = hints[name], raw[name], f"{where}.{name}"
        if dataclasses.is_dataclass(t):
            values[name] = _config(t, v, at)
        elif isinstance(t, type) and issubclass(t, Enum):
            if v not in t.__members__:
                raise _Bad(at, f"expected one of {sorted(t.__members__)}, got {v!r}")
            values[name] = t[v]
        elif t is float:
            values[name] = float(_typed(v, (int, float), at))
        elif t in (bool, int):
            values[name] = _typed(v, t, at)
        elif typing.get_origin(t) is list and typing.get_args(t) == (int,):
            values[name] = [_typed(w, int, f"{at}[{i}]") for i, w in enumerate(_typed(v, list, at))]
        else:  # a config field this reader does not know: a bug here, not in the file
            raise TypeError(f"{at}: no reader for {t}")
    return cls(**values)


def _args(kind: Kind, raw: Any, where: str) -> dict:
    _keys(raw, kind.args, where)
    args = {}
    for name in kind.args:
        value = raw[name]
        if name == "ert" and isinstance(value, int) and not isinstance(value, bool):  # 100 for 100.0
            value = float(value)
        check, what = ARGS[name]
        if not check(value):
            raise _Bad(f"{where}.{name}", f"expected {what}, got {value!r}")
        args[name] = value
    return args


def _check_array(value: np.ndarray, kinds: str, shape: tuple, where: str, finite: bool) -> None:
    if value.dtype.kind not in kinds:
        raise _Bad(where, f"dtype {value.dtype} is not {'an integer' if kinds == 'i' else 'a float'} type")
    if value.shape != shape:
        raise _Bad(where, f"shape {value.shape} disagrees with the stored arguments and reference, which need "
                          f"{shape}")
    if finite and value.dtype.kind == "f" and not np.isfinite(value).all():
        raise _Bad(where, "holds NaN or infinite values")


def _reference(value: np.ndarray, where: str) -> None:
    if value.ndim != 2 or len(value) < 2 or value.shape[1] < 1:
        raise _Bad(where, f"expected a reference matrix (rows x columns), got shape {value.shape}")
    if value.dtype.kind not in "fiub" or value.dtype.kind == "f" and not np.isfinite(value).all():
        raise _Bad(where, f"expected finite numbers, got dtype {value.dtype}")


def _header(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DetectorFileError(path, "(file)", f"not JSON: {exc}") from None


def stored_config_key(directory: str | Path) -> str:
    """The ``config_key`` of the suite stored in ``directory``, read before anything else: a suite from
    another config (perhaps of another config schema) is rebuilt, not validated against this one."""
    path = Path(directory) / DETECTORS_FILE
    header = _header(path)
    if not isinstance(header, dict) or not isinstance(header.get("config_key"), str):
        raise DetectorFileError(path, "config_key", "missing, or not a string")
    return header["config_key"]


def read(directory: str | Path) -> DetectorSuite:
    """The suite ``write`` stored in ``directory``; ``DetectorFileError`` (file, field) if it is not one."""
    path = Path(directory) / DETECTORS_FILE
    header = _header(path)
    try:
        suite, specs = _suite(header)
    except _Bad as bad:
        raise DetectorFileError(path, bad.field, bad.problem) from None
    arrays_path = Path(directory) / DETECTOR_ARRAYS_FILE
    if not arrays_path.is_file():
        raise DetectorFileError(arrays_path, "(file)", "missing")
    if _sha256(arrays_path) != header["arrays"]["sha256"]:
        raise DetectorFileError(path, "arrays.sha256", f"does not match {arrays_path.name}")
    try:
        arrays = {k: np.array(v, copy=True) for k, v in load_file(arrays_path).items()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise DetectorFileError(arrays_path, "(file)", f"not a safetensors file: {exc}") from None
    expected: set[str] = set()
    for name, (kind, args) in specs.items():
        try:
            x, fitted = _arrays(name, KINDS[kind], args, arrays, suite.names.get(name))
        except _Bad as bad:  # about an argument (the JSON file) or an array (the safetensors file)
            if bad.field.startswith(("args.", "names.")):
                raise DetectorFileError(path, bad.field if bad.field.startswith("names.")
                                        else f"detectors.{name}.{bad.field}", bad.problem) from None
            raise DetectorFileError(arrays_path, bad.field, bad.problem) from None
        expected |= {f"{name}/x_ref", *(f"{name}/{key}" for key in fitted)}
        suite.specs[name] = DetectorSpec(kind, args, x)
        try:
            suite.place(name, KINDS[kind].restore(x, args, fitted) if KINDS[kind].restore else KINDS[kind].build(x, args))
        except _Bad as bad:
            raise DetectorFileError(path, f"detectors.{name}.{bad.field}", bad.problem) from None
        except Exception as exc:  # alibi-detect refusing what it was given
            raise DetectorFileError(path, f"detectors.{name}", f"{kind} refused the stored arguments or arrays "
                                    f"({name}/* in {DETECTOR_ARRAYS_FILE}): {type(exc).__name__}: {exc}") from exc
    if set(arrays) != expected:
        raise DetectorFileError(arrays_path, "(arrays)", f"unexpected {sorted(set(arrays) - expected)}")
    return suite


def _arrays(name: str, kind: Kind, args: dict, arrays: dict, names: list[str] | None):
    """Detector ``name``'s reference and fitted arrays, each checked against the arguments and the others."""
    x = arrays.get(f"{name}/x_ref")
    if x is None:
        raise _Bad(f"{name}/x_ref", "missing")
    _reference(x, f"{name}/x_ref")
    if names is not None and len(names) != x.shape[1]:
        raise _Bad(f"names.{name}", f"{len(names)} names for the {x.shape[1]} columns of {name}/x_ref")
    fitted = {}
    for key, (dtypes, shape) in kind.expect(x, args).items():
        field = f"{name}/{key}"
        if field not in arrays:
            raise _Bad(field, "missing")
        _check_array(arrays[field], dtypes, shape, field, finite=key not in ("thresholds", "permit_probs"))
        fitted[key] = arrays[field]
    _indices(x, fitted, name)
    return x, fitted


def _indices(x: np.ndarray, fitted: dict, name: str) -> None:
    """MMDDriftOnline's split of the reference: distinct rows, no row on both sides."""
    for key in ("ref_inds", "init_test_inds"):
        if key in fitted:
            inds = fitted[key]
            if inds.min() < 0 or inds.max() >= len(x) or len(np.unique(inds)) != len(inds):
                raise _Bad(f"{name}/{key}", f"must be distinct rows of the {len(x)}-row reference")
    if "ref_inds" in fitted and len(np.intersect1d(fitted["ref_inds"], fitted["init_test_inds"])):
        raise _Bad(f"{name}/init_test_inds", "shares rows with ref_inds")


def _suite(header: Any) -> tuple[DetectorSuite, dict[str, tuple[str, dict]]]:
    from foundry.data.preprocessor import Preprocessor

    _keys(header, HEADER, "(top level)")
    if header["format"] != FORMAT:
        raise _Bad("format", f"expected {FORMAT}, got {header['format']!r}")
    version, key, task = (_typed(header[k], str, k) for k in ("version", "config_key", "task"))
    if task not in {t.value for t in Task}:
        raise _Bad("task", f"expected one of {[t.value for t in Task]}, got {task!r}")
    cfg = _config(DriftDetectorsConfig, header["config"], "config")
    if config_key(cfg) != key:
        raise _Bad("config_key", f"{key!r} is not the key of the stored config ({config_key(cfg)!r})")
    try:
        pre = Preprocessor.from_json(_typed(header["pre_json"], str, "pre_json"))
    except (ValueError, TypeError, KeyError) as exc:
        raise _Bad("pre_json", f"not a preprocessor: {exc}") from None
    if pre.task != task:
        raise _Bad("task", f"{task!r}, but the preprocessor is for {pre.task!r}")
    _keys(header["arrays"], ("file", "sha256"), "arrays")
    if header["arrays"]["file"] != DETECTOR_ARRAYS_FILE:
        raise _Bad("arrays.file", f"expected {DETECTOR_ARRAYS_FILE!r}, got {header['arrays']['file']!r}")
    _typed(header["arrays"]["sha256"], str, "arrays.sha256")

    detectors = _keys(header["detectors"], SLOTS, "detectors", optional=SLOTS)
    specs = {}
    for name, raw in detectors.items():
        enabled = getattr(cfg, name).enabled
        if not enabled:
            raise _Bad(f"detectors.{name}", f"stored, but drift.detectors.{name} is disabled in the config")
        _keys(raw, ("kind", "args"), f"detectors.{name}")
        kind = _typed(raw["kind"], str, f"detectors.{name}.kind")
        if kind != kind_for(name, cfg, task):
            raise _Bad(f"detectors.{name}.kind", f"expected {kind_for(name, cfg, task)!r} for this config, "
                                                 f"got {kind!r}")
        specs[name] = (kind, _args(KINDS[kind], raw["args"], f"detectors.{name}.args"))
    for name in ("tabular", "multivariate", "prediction", "online"):
        if getattr(cfg, name).enabled and name not in specs:
            raise _Bad("detectors", f"{name} is enabled in the config but not stored")

    error = header["concept_reference_error"]
    if ("concept" in specs) != (error is not None):
        raise _Bad("concept_reference_error", "must be a number exactly when a concept detector is stored")
    if error is not None and not 0 <= _typed(error, (int, float), "concept_reference_error") < math.inf:
        raise _Bad("concept_reference_error", f"expected a non-negative number, got {error!r}")
    named = [n for n in specs if n in ("tabular", "prediction")]  # the detectors that test named columns
    names = _keys(header["names"], named, "names")
    for name, cols in names.items():
        if not all(isinstance(c, str) for c in _typed(cols, list, f"names.{name}")):
            raise _Bad(f"names.{name}", "expected a list of strings")
    seconds = _keys(header["build_seconds"], list(specs), "build_seconds", optional=list(specs))
    for name, s in seconds.items():
        _typed(s, (int, float), f"build_seconds.{name}")

    suite = DetectorSuite(version, key, task, cfg, header["pre_json"])
    suite._pre = pre
    suite.names = {n: list(c) for n, c in names.items()}
    suite.build_seconds = {n: float(s) for n, s in seconds.items()}
    suite.concept_reference_error = None if error is None else float(error)
    return suite, specs


__all__ = ["FORMAT", "KINDS", "DetectorFileError", "build", "kind_for", "read", "stored_config_key", "write"]
