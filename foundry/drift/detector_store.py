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
fitted parts taken from the file instead of being fitted again (the ``_Stored*`` subclasses in
``foundry.drift.detector_restore`` replace just the fitting steps), so a loaded suite gives the same
results as the one saved and never recalibrates. The rest (TabularDrift, KSDrift, FETDrift, LSDD's
normalisation, kernel matrices) is recomputed from the reference: cheap and deterministic.

Nothing read names code: a kind is looked up in ``KINDS`` (``detector_restore``), never imported.
Everything is checked before a detector is built (types, ranges, the arrays' names, dtypes and shapes
against the arguments and the config); a file that fails says which file and field
(``DetectorFileError``).

This module imports alibi-detect and torch (through ``detector_restore``): ``foundry.drift.detectors``
imports it only when a suite is built, saved or loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from foundry.config import DriftDetectorsConfig, Task
from foundry.drift.detector_restore import ARGS, KINDS, BadField, Kind, build, kind_for
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
        raise BadField(where, f"expected an object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj and k not in optional]
    extra = sorted(set(obj) - set(keys))
    if missing or extra:
        raise BadField(where, f"missing {missing}" if missing else f"unexpected {extra}")
    return obj


def _typed(value: Any, types: type | tuple, where: str) -> Any:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        raise BadField(where, f"expected {' or '.join(t.__name__ for t in types)}, got {type(value).__name__}")
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
                raise BadField(at, f"expected one of {sorted(t.__members__)}, got {v!r}")
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
            raise BadField(f"{where}.{name}", f"expected {what}, got {value!r}")
        args[name] = value
    return args


def _check_array(value: np.ndarray, kinds: str, shape: tuple, where: str, finite: bool) -> None:
    if value.dtype.kind not in kinds:
        raise BadField(where, f"dtype {value.dtype} is not {'an integer' if kinds == 'i' else 'a float'} type")
    if value.shape != shape:
        raise BadField(where, f"shape {value.shape} disagrees with the stored arguments and reference, which need "
                          f"{shape}")
    if finite and value.dtype.kind == "f" and not np.isfinite(value).all():
        raise BadField(where, "holds NaN or infinite values")


def _reference(value: np.ndarray, where: str) -> None:
    if value.ndim != 2 or len(value) < 2 or value.shape[1] < 1:
        raise BadField(where, f"expected a reference matrix (rows x columns), got shape {value.shape}")
    if value.dtype.kind not in "fiub" or value.dtype.kind == "f" and not np.isfinite(value).all():
        raise BadField(where, f"expected finite numbers, got dtype {value.dtype}")


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
    except BadField as bad:
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
        except BadField as bad:  # about an argument (the JSON file) or an array (the safetensors file)
            if bad.field.startswith(("args.", "names.")):
                raise DetectorFileError(path, bad.field if bad.field.startswith("names.")
                                        else f"detectors.{name}.{bad.field}", bad.problem) from None
            raise DetectorFileError(arrays_path, bad.field, bad.problem) from None
        expected |= {f"{name}/x_ref", *(f"{name}/{key}" for key in fitted)}
        suite.specs[name] = DetectorSpec(kind, args, x)
        try:
            suite.place(name, KINDS[kind].restore(x, args, fitted) if KINDS[kind].restore else KINDS[kind].build(x, args))
        except BadField as bad:
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
        raise BadField(f"{name}/x_ref", "missing")
    _reference(x, f"{name}/x_ref")
    if names is not None and len(names) != x.shape[1]:
        raise BadField(f"names.{name}", f"{len(names)} names for the {x.shape[1]} columns of {name}/x_ref")
    fitted = {}
    for key, (dtypes, shape) in kind.expect(x, args).items():
        field = f"{name}/{key}"
        if field not in arrays:
            raise BadField(field, "missing")
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
                raise BadField(f"{name}/{key}", f"must be distinct rows of the {len(x)}-row reference")
    if "ref_inds" in fitted and len(np.intersect1d(fitted["ref_inds"], fitted["init_test_inds"])):
        raise BadField(f"{name}/init_test_inds", "shares rows with ref_inds")


def _suite(header: Any) -> tuple[DetectorSuite, dict[str, tuple[str, dict]]]:
    from foundry.data.preprocessor import Preprocessor

    _keys(header, HEADER, "(top level)")
    if header["format"] != FORMAT:
        raise BadField("format", f"expected {FORMAT}, got {header['format']!r}")
    version, key, task = (_typed(header[k], str, k) for k in ("version", "config_key", "task"))
    if task not in {t.value for t in Task}:
        raise BadField("task", f"expected one of {[t.value for t in Task]}, got {task!r}")
    cfg = _config(DriftDetectorsConfig, header["config"], "config")
    if config_key(cfg) != key:
        raise BadField("config_key", f"{key!r} is not the key of the stored config ({config_key(cfg)!r})")
    try:
        pre = Preprocessor.from_json(_typed(header["pre_json"], str, "pre_json"))
    except (ValueError, TypeError, KeyError) as exc:
        raise BadField("pre_json", f"not a preprocessor: {exc}") from None
    if pre.task != task:
        raise BadField("task", f"{task!r}, but the preprocessor is for {pre.task!r}")
    _keys(header["arrays"], ("file", "sha256"), "arrays")
    if header["arrays"]["file"] != DETECTOR_ARRAYS_FILE:
        raise BadField("arrays.file", f"expected {DETECTOR_ARRAYS_FILE!r}, got {header['arrays']['file']!r}")
    _typed(header["arrays"]["sha256"], str, "arrays.sha256")

    detectors = _keys(header["detectors"], SLOTS, "detectors", optional=SLOTS)
    specs = {}
    for name, raw in detectors.items():
        enabled = getattr(cfg, name).enabled
        if not enabled:
            raise BadField(f"detectors.{name}", f"stored, but drift.detectors.{name} is disabled in the config")
        _keys(raw, ("kind", "args"), f"detectors.{name}")
        kind = _typed(raw["kind"], str, f"detectors.{name}.kind")
        if kind != kind_for(name, cfg, task):
            raise BadField(f"detectors.{name}.kind", f"expected {kind_for(name, cfg, task)!r} for this config, "
                                                 f"got {kind!r}")
        specs[name] = (kind, _args(KINDS[kind], raw["args"], f"detectors.{name}.args"))
    for name in ("tabular", "multivariate", "prediction", "online"):
        if getattr(cfg, name).enabled and name not in specs:
            raise BadField("detectors", f"{name} is enabled in the config but not stored")

    error = header["concept_reference_error"]
    if ("concept" in specs) != (error is not None):
        raise BadField("concept_reference_error", "must be a number exactly when a concept detector is stored")
    if error is not None and not 0 <= _typed(error, (int, float), "concept_reference_error") < math.inf:
        raise BadField("concept_reference_error", f"expected a non-negative number, got {error!r}")
    named = [n for n in specs if n in ("tabular", "prediction")]  # the detectors that test named columns
    names = _keys(header["names"], named, "names")
    for name, cols in names.items():
        if not all(isinstance(c, str) for c in _typed(cols, list, f"names.{name}")):
            raise BadField(f"names.{name}", "expected a list of strings")
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
