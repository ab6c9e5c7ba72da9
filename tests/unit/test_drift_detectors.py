"""The drift detector suite on a real model version directory (built here, without Ray): every shipped
``conf/drift`` option builds its detectors, each flags the drift it is meant to and stays quiet on
clean traffic, and a stored suite round-trips and is reused only by a monitor with the same config.

A stored suite is data only (JSON and safetensors, ``foundry.drift.detector_store``): loading gives the
same results without calibrating again, never unpickles anything, and refuses a file it did not write.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
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
from alibi_detect.utils.pytorch import kernels
from safetensors.numpy import load_file, save_file

from foundry import config, datasets
from foundry.config import (
    CONF_DIR,
    ConceptMethod,
    Correction,
    DriftDetectorsConfig,
    MultivariateMethod,
    OnlineMethod,
)
from foundry.drift.detector_restore import KINDS
from foundry.drift.detector_store import DetectorFileError
from foundry.drift.detectors import (
    DETECTOR_ARRAYS_FILE,
    DETECTOR_FILES,
    DETECTORS_FILE,
    LEGACY_DETECTORS_FILE,
    DetectorResult,
    DetectorSuite,
    build_suite,
    config_key,
    load_or_build,
)
from foundry.models.predictor import REFERENCE_FILE, Predictor
from tests.versions import build_version_dir

VERSION = "churn-v1"
WINDOW_ROWS = 1000
COVARIATE_COLUMNS = {"monthly_charges", "data_usage_gb", "age"}
NEW_CATEGORY_COLUMNS = {"payment_method", "region"}

# Full online calibration (ert=5000 over 20000 bootstrap streams) takes ~100 s on CPU; the training
# job pays it once per version. Here a small ERT, few bootstraps and short windows keep the build
# under a second while exercising the same code paths.
FAST_CALIBRATION = [
    "drift.detectors.online.ert=100", "drift.detectors.online.n_bootstraps=1000",
    "drift.detectors.online.window_sizes=[20]", "drift.detectors.online.reference_rows=200",
    "drift.detectors.concept.ert=100", "drift.detectors.concept.n_bootstraps=1000",
    "drift.detectors.concept.window_sizes=[20]",
]

OPTIONS = sorted(f.stem for f in (CONF_DIR / "drift").glob("*.yaml"))
# Methods and settings no shipped option picks, so that every choice a conf/drift file may make is built
# and tested too: name -> overrides.
VARIANTS = {
    "default+mmd": ["drift=default", "drift.detectors.multivariate.method=mmd",
                    "drift.detectors.multivariate.n_permutations=50"],
    "default+fdr": ["drift=default", "drift.detectors.tabular.correction=fdr"],
    # alibi-detect's online detectors, as diagnostics beside the sequential alarm (conf/drift/online.yaml).
    "online+cvm": ["drift=online", "drift.detectors.online.enabled=true", "drift.detectors.concept.enabled=true",
                   "drift.detectors.concept.method=fet_online"],
    "online+mmd": ["drift=online", "drift.detectors.online.enabled=true", "drift.detectors.online.method=mmd"],
}
CASES = OPTIONS + sorted(VARIANTS)


def _needs_calibration(d: DriftDetectorsConfig) -> bool:
    return d.online.enabled or (d.concept.enabled and d.concept.method is ConceptMethod.fet_online)


@functools.cache
def detectors_cfg(option: str, *extra: str) -> DriftDetectorsConfig:
    """``drift.detectors`` of one conf/drift option or variant (storage is never touched: any root will do)."""
    overrides = ["storage.root=/unused", *VARIANTS.get(option, [f"drift={option}"]), *extra]
    d = config.load(overrides).drift.detectors
    return config.load([*overrides, *FAST_CALIBRATION]).drift.detectors if _needs_calibration(d) else d


def options_with(name: str) -> list[str]:
    return [o for o in CASES if getattr(detectors_cfg(o), name).enabled]


def test_options_are_discovered_and_every_method_is_covered():
    assert {"default", "light", "online"} <= set(OPTIONS)
    assert options_with("tabular") and options_with("multivariate") and options_with("online")
    cfgs = [detectors_cfg(c) for c in CASES]
    for name, enum in (("multivariate", MultivariateMethod), ("online", OnlineMethod), ("concept", ConceptMethod)):
        assert {getattr(d, name).method for d in cfgs if getattr(d, name).enabled} == set(enum), name
    assert {d.tabular.correction for d in cfgs if d.tabular.enabled} == set(Correction)


# ---- a model version directory, as the training job stages it ---------------------------------------------


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory, cfg) -> Path:
    """A small churn model's version directory, as the training job stages it (``tests/versions.py``)."""
    return build_version_dir(cfg, tmp_path_factory.mktemp("version"))


@pytest.fixture(scope="module")
def windows(version_dir) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(x_num, x_cat, scores) of a live window per scenario, as the monitor receives them."""
    predictor = Predictor.from_dir(version_dir)
    out = {}
    for scenario in ("baseline", "covariate_shift", "new_category"):
        preds = predictor.predict(datasets.generate("churn", scenario, WINDOW_ROWS, seed=2))
        out[scenario] = (preds.encoded["x_num"], preds.encoded["x_cat"], preds.proba)
    return out


@pytest.fixture(scope="module")
def suites(version_dir):
    """One suite per option, built on first use."""
    built: dict[str, DetectorSuite] = {}

    def get(option: str) -> DetectorSuite:
        if option not in built:
            built[option] = build_suite(detectors_cfg(option), version_dir, VERSION, say=lambda _: None)
        built[option].reset_online()
        return built[option]

    return get


def run_window(suite: DetectorSuite, window) -> dict[str, DetectorResult]:
    with torch.random.fork_rng():
        torch.manual_seed(0)  # LSDD/MMD draw their permutations from torch's global generator
        return {r.detector: r for r in suite.test_window(*window)}


def error_stream(rate: float, rows: int) -> np.ndarray:
    """0/1 errors at exactly ``rate``, evenly spread (no run of bad luck looks like drift)."""
    i = np.arange(rows)
    return (np.floor((i + 1) * rate) - np.floor(i * rate)).astype(np.int64)


# ---- building ---------------------------------------------------------------------------------------------


MULTIVARIATE = {"lsdd": LSDDDrift, "mmd": MMDDrift}
CONCEPT = {"fet": FETDrift, "fet_online": FETDriftOnline}
ONLINE = {"cvm": CVMDriftOnline, "mmd": MMDDriftOnline}


@pytest.mark.parametrize("option", CASES)
def test_every_enabled_detector_is_built(option, suites):
    d = detectors_cfg(option)
    suite = suites(option)
    assert suite.version == VERSION and suite.task == "binary" and suite.config_key == config_key(d)
    expected = [name for name in ("tabular", "multivariate", "prediction") if getattr(d, name).enabled]
    assert list(suite.window) == expected
    if d.tabular.enabled:
        assert isinstance(suite.window["tabular"], TabularDrift)
        assert len(suite.names["tabular"]) == suite.window["tabular"].n_features
    if d.multivariate.enabled:
        assert isinstance(suite.window["multivariate"], MULTIVARIATE[d.multivariate.method.value])
    if d.prediction.enabled:
        assert isinstance(suite.window["prediction"], KSDrift) and suite.names["prediction"] == ["p(1)"]
    assert (suite.concept is not None) == d.concept.enabled
    if d.concept.enabled:
        assert isinstance(suite.concept, CONCEPT[d.concept.method.value])
        assert 0 < suite.concept_reference_error < 0.5
    assert (suite.online is not None) == d.online.enabled
    if d.online.enabled:
        assert isinstance(suite.online, ONLINE[d.online.method.value])
    assert set(suite.build_seconds) == set(expected) | {n for n in ("concept", "online") if getattr(d, n).enabled}


def test_a_too_small_reference_sample_is_refused(version_dir, tmp_path):
    small = tmp_path / "small"
    shutil.copytree(version_dir, small)
    pd.read_parquet(small / REFERENCE_FILE).head(49).to_parquet(small / REFERENCE_FILE, index=False)
    with pytest.raises(ValueError, match="49 rows"):
        build_suite(detectors_cfg("light"), small, VERSION)


# ---- windowed tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", CASES)
def test_a_baseline_window_shows_no_drift(option, suites, windows):
    suite = suites(option)
    results = run_window(suite, windows["baseline"])
    assert set(results) == set(suite.window)
    for r in results.values():
        assert not r.drift, r
        assert r.rows == WINDOW_ROWS and r.p_value > r.threshold
    if "tabular" in results:
        assert results["tabular"].detail["drifted_columns"] == []


@pytest.mark.parametrize("option", sorted(set(options_with("tabular")) | set(options_with("multivariate"))))
def test_a_covariate_shift_is_flagged_naming_the_columns(option, suites, windows):
    suite = suites(option)
    results = run_window(suite, windows["covariate_shift"])
    for name in ("tabular", "multivariate"):
        if name in suite.window:
            assert results[name].drift and results[name].vote, results[name]
    if "tabular" in results:
        drifted = set(results["tabular"].detail["drifted_columns"])
        assert drifted & COVARIATE_COLUMNS and drifted <= set(suite.names["tabular"])


@pytest.mark.parametrize("option", options_with("tabular"))
def test_a_new_category_is_flagged(option, suites, windows):
    result = run_window(suites(option), windows["new_category"])["tabular"]
    assert result.drift
    assert set(result.detail["drifted_columns"]) & NEW_CATEGORY_COLUMNS


# ---- concept drift --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", options_with("concept"))
def test_concept_drift_is_an_error_rate_above_the_reference(option, suites):
    suite = suites(option)
    d = detectors_cfg(option)
    ref = suite.concept_reference_error
    rows = d.concept.window_rows if d.concept.method is ConceptMethod.fet else 10 * d.concept.window_sizes[0]

    same = suite.test_concept(error_stream(ref, rows))
    assert not same.drift, same
    assert same.detail["error_rate"] == pytest.approx(ref, abs=1 / rows)
    assert same.detail["reference_error_rate"] == ref and same.vote == d.concept.vote

    suite.reset_online()
    worse = suite.test_concept(error_stream(min(ref + 0.4, 0.95), rows))
    assert worse.drift, worse
    if d.concept.method is ConceptMethod.fet_online:
        assert 0 <= worse.detail["drift_at_row"] < rows
    assert suite.test_concept(np.zeros(0, dtype=np.int64)) is None


def test_errors_compare_predicted_and_actual_labels(suites):
    suite = suites(options_with("concept")[0])
    errs = suite.errors(np.array(["1", "0", "1"], dtype=object), np.array([1, 0, 0]))
    assert errs.tolist() == [0, 0, 1]


# ---- online detection on features ----------------------------------------------------------------------------


@pytest.mark.parametrize("option", options_with("online"))
def test_online_detection_flags_a_covariate_shift(option, suites, windows):
    suite = suites(option)
    x_num, x_cat, _ = windows["covariate_shift"]
    result = suite.update_online(x_num[:300], x_cat[:300])
    assert result.drift and result.rows == 300 and result.statistic > result.threshold
    assert 0 <= result.detail["drift_at_row"] < 300
    assert suite.online.t == 0  # reset after the detection, ready for the next rows
    assert suite.update_online(x_num[:0], x_cat[:0]) is None


# ---- persistence and reuse ------------------------------------------------------------------------------------


# What a detector's constructor computes from its reference (or draws at random, or calibrates): each must come
# back from the files exactly, or a loaded suite would not test like the one saved.
FITTED_STATE = ("x_ref", "thresholds", "permit_probs", "ref_inds", "init_test_inds", "k_xx_sub_sum", "k_xx",
                "kernel_centers", "k_xc", "H", "ref_cdf_ref", "sum_ref", "categories_per_feature", "n_kernel_centers")


def _value(v):
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    if isinstance(v, list) and v and isinstance(v[0], torch.Tensor):
        return np.asarray([t.item() for t in v])
    return v


def fitted_state(det) -> dict:
    inner = getattr(det, "_detector", det)
    state = {a: _value(getattr(inner, a)) for a in FITTED_STATE if getattr(inner, a, None) is not None}
    if hasattr(inner, "kernel"):
        state["log_sigma"] = _value(inner.kernel.log_sigma)
    return state


def assert_same_state(loaded, built) -> None:
    want, got = fitted_state(built), fitted_state(loaded)
    assert set(got) == set(want)
    for key, value in want.items():
        if isinstance(value, np.ndarray):
            assert got[key].dtype == value.dtype, key
            np.testing.assert_array_equal(got[key], value, err_msg=key)  # NaN (no threshold yet) == NaN
        else:
            assert got[key] == value, key


def detectors_of(suite: DetectorSuite) -> dict:
    return {**suite.window, **{n: getattr(suite, n) for n in ("concept", "online") if getattr(suite, n) is not None}}


@pytest.mark.parametrize("option", CASES)
def test_save_and_load_give_identical_results(option, suites, windows, tmp_path):
    suite = suites(option)
    suite.save(tmp_path)
    loaded = DetectorSuite.load(tmp_path)
    assert loaded.config_key == suite.config_key and loaded.version == suite.version and loaded.task == suite.task
    assert loaded.cfg == suite.cfg and loaded.build_seconds == suite.build_seconds
    assert loaded.names == suite.names and loaded.concept_reference_error == suite.concept_reference_error
    assert loaded.preprocessor == suite.preprocessor
    built, back = detectors_of(suite), detectors_of(loaded)
    assert list(back) == list(built)
    for name, det in built.items():
        assert isinstance(back[name], type(det)), name
        assert_same_state(back[name], det)
    for scenario in ("baseline", "covariate_shift"):
        assert run_window(loaded, windows[scenario]) == run_window(suite, windows[scenario])
    if suite.concept is not None:
        stream = error_stream(min(suite.concept_reference_error + 0.4, 0.95), 200)
        suite.reset_online()
        assert loaded.test_concept(stream) == suite.test_concept(stream)
    if suite.online is not None:
        x_num, x_cat, _ = windows["covariate_shift"]
        suite.reset_online()
        assert loaded.update_online(x_num[:300], x_cat[:300]) == suite.update_online(x_num[:300], x_cat[:300])
    suite.reset_online()


def _refuse(*_, **__):
    raise AssertionError("loading a stored suite must not fit or calibrate anything")


# The options with a detector whose constructor fits something: a kernel (LSDD/MMD) or thresholds (online).
FITTED = sorted({*options_with("multivariate"), *(o for o in CASES if _needs_calibration(detectors_cfg(o)))})


@pytest.mark.parametrize("option", FITTED)
def test_loading_never_calibrates_or_draws_again(option, suites, tmp_path, monkeypatch):
    """The bootstrap calibration, the bandwidth inference and every random draw of a constructor are
    replaced by what the files hold: with each of them made to fail, loading still succeeds."""
    suite = suites(option)
    suite.save(tmp_path)
    with monkeypatch.context() as m:
        for cls in (CVMDriftOnline, FETDriftOnline):
            m.setattr(cls, "_configure_thresholds", _refuse)
            m.setattr(cls, "_simulate_streams", _refuse)
        m.setattr(MMDDriftOnlineTorch, "_configure_thresholds", _refuse)
        m.setattr(MMDDriftOnlineTorch, "_configure_ref_subset", _refuse)
        m.setattr(LSDDDriftTorch, "_configure_kernel_centers", _refuse)
        m.setattr(kernels, "sigma_median", _refuse)  # the median heuristic for a kernel's bandwidth
        m.setattr(torch, "randperm", _refuse)
        m.setattr(np.random, "randn", _refuse)
        m.setattr(np.random, "choice", _refuse)
        loaded = DetectorSuite.load(tmp_path)
    for name, det in detectors_of(suite).items():
        assert_same_state(detectors_of(loaded)[name], det)


def test_the_stored_files_are_data_only(suites, tmp_path):
    suite = suites("default")
    suite.save(tmp_path)
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(DETECTOR_FILES)
    header = json.loads((tmp_path / DETECTORS_FILE).read_text(encoding="utf-8"))  # plain JSON
    assert header["detectors"]["multivariate"]["kind"] == "LSDDDrift"
    assert header["arrays"] == {"file": DETECTOR_ARRAYS_FILE,
                                "sha256": hashlib.sha256((tmp_path / DETECTOR_ARRAYS_FILE).read_bytes()).hexdigest()}
    arrays = load_file(tmp_path / DETECTOR_ARRAYS_FILE)  # safetensors: a JSON header and raw numbers
    assert {"tabular/x_ref", "multivariate/x_ref", "multivariate/log_sigma", "multivariate/kernel_centers",
            "multivariate/k_xc", "prediction/x_ref", "concept/x_ref"} == set(arrays)
    assert all(a.dtype.kind in "fiu" for a in arrays.values())
    for name in DETECTOR_FILES:
        assert not (tmp_path / name).read_bytes().startswith(b"\x80")  # a pickle's PROTO opcode


class _Planted:
    """A pickle that creates ``marker`` when unpickled: code running from a stored file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (self.marker.touch, ())


def _plant(marker: Path) -> bytes:
    payload = pickle.dumps(_Planted(marker))
    probe = marker.with_name("probe")
    pickle.loads(pickle.dumps(_Planted(probe)))  # the plant is live: unpickling it would run it
    assert probe.exists()
    probe.unlink()
    return payload


def test_a_planted_pickle_is_never_unpickled(version_dir, tmp_path):
    vdir = tmp_path / "version"
    shutil.copytree(version_dir, vdir)
    marker = tmp_path / "ran"
    payload = _plant(marker)
    said: list[str] = []

    (vdir / LEGACY_DETECTORS_FILE).write_bytes(payload)  # a pickle under the old name is ignored
    suite = load_or_build(detectors_cfg("light"), vdir, "asked-for", say=said.append)
    assert suite.version == "asked-for" and any("never unpickled" in s for s in said)

    (vdir / DETECTORS_FILE).write_bytes(payload)  # and refused under the new one
    with pytest.raises(DetectorFileError, match="not JSON") as err:
        load_or_build(detectors_cfg("light"), vdir, "asked-for", say=said.append)
    assert err.value.path == vdir / DETECTORS_FILE

    suite.save(vdir)  # as arrays, with a checksum that matches
    (vdir / DETECTOR_ARRAYS_FILE).write_bytes(payload)
    header = json.loads((vdir / DETECTORS_FILE).read_text())
    header["arrays"]["sha256"] = hashlib.sha256(payload).hexdigest()
    (vdir / DETECTORS_FILE).write_text(json.dumps(header))
    with pytest.raises(DetectorFileError, match="not a safetensors file") as err:
        DetectorSuite.load(vdir)
    assert err.value.path == vdir / DETECTOR_ARRAYS_FILE
    assert not marker.exists()


def _set(path: str, value):
    def change(header: dict, arrays: dict) -> None:
        *parents, last = path.split(".")
        obj = header
        for key in parents:
            obj = obj[key]
        obj[last] = value
    return change


def _drop(path: str):
    def change(header: dict, arrays: dict) -> None:
        *parents, last = path.split(".")
        obj = header
        for key in parents:
            obj = obj[key]
        del obj[last]
    return change


def _array(key: str, value=None):
    def change(header: dict, arrays: dict) -> None:
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value(arrays.get(key))
    return change


# (option, change, file, field): every kind of wrong content is refused naming the file and the field
TAMPERED = {
    "kind names code": ("default", _set("detectors.tabular.kind", "builtins.eval"), DETECTORS_FILE,
                        "detectors.tabular.kind"),
    "kind of another config": ("default", _set("detectors.multivariate.kind", "MMDDrift"), DETECTORS_FILE,
                               "detectors.multivariate.kind"),
    "argument smuggled in": ("default", _set("detectors.multivariate.args.preprocess_fn", "os.system"),
                             DETECTORS_FILE, "detectors.multivariate.args"),
    "argument of the wrong type": ("default", _set("detectors.prediction.args.p_val", "0.05"), DETECTORS_FILE,
                                   "detectors.prediction.args.p_val"),
    "column out of range": ("default", _set("detectors.tabular.args.categorical_columns", [8, 99]), DETECTORS_FILE,
                            "detectors.tabular.args.categorical_columns"),
    "config of the wrong type": ("default", _set("config.tabular.p_val", "high"), DETECTORS_FILE,
                                 "config.tabular.p_val"),
    "config enum unknown": ("default", _set("config.multivariate.method", "__import__"), DETECTORS_FILE,
                            "config.multivariate.method"),
    "config interpolation": ("default", _set("config.tabular.correction", "${oc.env:HOME}"), DETECTORS_FILE,
                             "config.tabular.correction"),
    "config key of another config": ("default", _set("config_key", "0" * 16), DETECTORS_FILE, "config_key"),
    "detector disabled in the config": ("light", _set("detectors.multivariate", {"kind": "LSDDDrift", "args": {}}),
                                        DETECTORS_FILE, "detectors.multivariate"),
    "field missing": ("default", _drop("names"), DETECTORS_FILE, "(top level)"),
    "unknown format": ("default", _set("format", 2), DETECTORS_FILE, "format"),
    "unknown task": ("default", _set("task", "evil"), DETECTORS_FILE, "task"),
    "names disagree with the reference": ("default", _set("names.prediction", ["a", "b"]), DETECTORS_FILE,
                                          "names.prediction"),
    "arrays elsewhere": ("default", _set("arrays.file", "../elsewhere.safetensors"), DETECTORS_FILE, "arrays.file"),
    "arrays changed": ("default", _set("arrays.sha256", "0" * 64), DETECTORS_FILE, "arrays.sha256"),
    "array missing": ("default", _array("multivariate/kernel_centers"), DETECTOR_ARRAYS_FILE,
                      "multivariate/kernel_centers"),
    "array of another shape": ("default", _array("multivariate/k_xc", lambda a: a[:-1]), DETECTOR_ARRAYS_FILE,
                               "multivariate/k_xc"),
    "array smuggled in": ("default", _array("tabular/extra", lambda a: np.zeros(3)), DETECTOR_ARRAYS_FILE,
                          "(arrays)"),
    "reference not finite": ("default", _array("prediction/x_ref", lambda a: a * np.nan), DETECTOR_ARRAYS_FILE,
                             "prediction/x_ref"),
    "thresholds of other windows": ("online+cvm", _set("detectors.online.args.window_sizes", [30]),
                                    DETECTOR_ARRAYS_FILE, "online/thresholds"),
    "thresholds missing": ("online+cvm", _array("concept/permit_probs"), DETECTOR_ARRAYS_FILE,
                           "concept/permit_probs"),
    "indices as floats": ("online+mmd", _array("online/ref_inds", lambda a: a.astype(np.float32)),
                          DETECTOR_ARRAYS_FILE, "online/ref_inds"),
    "reference refused by alibi-detect": ("default", _array("concept/x_ref", lambda a: a * 0 + 2), DETECTORS_FILE,
                                          "detectors.concept"),
    "window longer than the reference allows": ("online+mmd", _set("detectors.online.args.window_size", 150),
                                                DETECTORS_FILE, "detectors.online.args.window_size"),
    "names missing": ("default", _drop("names.tabular"), DETECTORS_FILE, "names"),
    "indices out of range": ("online+mmd", _array("online/init_test_inds", lambda a: a + 10_000),
                             DETECTOR_ARRAYS_FILE, "online/init_test_inds"),
    "indices overlapping": ("online+mmd", _array("online/init_test_inds", lambda a: a * 0 + 1), DETECTOR_ARRAYS_FILE,
                            "online/init_test_inds"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_load_refuses_what_it_did_not_write(case, suites, tmp_path):
    option, change, file, field = TAMPERED[case]
    suites(option).save(tmp_path)
    header = json.loads((tmp_path / DETECTORS_FILE).read_text())
    arrays = dict(load_file(tmp_path / DETECTOR_ARRAYS_FILE))
    change(header, arrays)
    save_file(arrays, tmp_path / DETECTOR_ARRAYS_FILE)
    if field != "arrays.sha256":
        header["arrays"]["sha256"] = hashlib.sha256((tmp_path / DETECTOR_ARRAYS_FILE).read_bytes()).hexdigest()
    (tmp_path / DETECTORS_FILE).write_text(json.dumps(header))
    with pytest.raises(DetectorFileError) as err:
        DetectorSuite.load(tmp_path)
    assert (err.value.path.name, err.value.field) == (file, field), str(err.value)
    assert str(err.value).startswith(f"{tmp_path / file}: {field}: ")


def test_every_kind_round_trips_in_some_option(suites):
    """The round-trip tests above cover every kind the store knows."""
    assert {spec.kind for option in CASES for spec in suites(option).specs.values()} == set(KINDS)


def test_load_or_build_uses_the_stored_suite_only_for_the_same_config(version_dir, tmp_path):
    vdir = tmp_path / "version"
    shutil.copytree(version_dir, vdir)
    stored_cfg = detectors_cfg("light")
    said: list[str] = []

    first = load_or_build(stored_cfg, vdir, "built-here", say=said.append)
    assert first.version == "built-here" and any("no stored detectors" in s for s in said)

    build_suite(stored_cfg, vdir, "stored", say=lambda _: None).save(vdir)
    said.clear()
    same = load_or_build(detectors_cfg("light"), vdir, "asked-for", say=said.append)
    assert same.version == "stored" and said == []

    other_cfg = detectors_cfg("light", "drift.detectors.tabular.p_val=0.01")
    rebuilt = load_or_build(other_cfg, vdir, "asked-for", say=said.append)
    assert rebuilt.version == "asked-for" and rebuilt.config_key == config_key(other_cfg) != same.config_key
    assert any("another drift.detectors config" in s for s in said)

    # A suite from a config this code cannot even read (another schema) is rebuilt too, not refused.
    header = json.loads((vdir / DETECTORS_FILE).read_text())
    header["config"]["tabular"]["a_later_setting"] = 1
    header["config_key"] = "0" * 16
    (vdir / DETECTORS_FILE).write_text(json.dumps(header))
    said.clear()
    assert load_or_build(stored_cfg, vdir, "asked-for", say=said.append).version == "asked-for"
    assert any("another drift.detectors config (0000000000000000 != " in s for s in said)


def test_config_key_follows_every_detector_setting():
    base = detectors_cfg("default")
    assert config_key(base) == config_key(detectors_cfg("default")) and len(config_key(base)) == 16
    changed = [
        "drift.detectors.tabular.p_val=0.01",
        "drift.detectors.tabular.correction=fdr",
        "drift.detectors.multivariate.method=mmd",
        "drift.detectors.multivariate.n_permutations=50",
        "drift.detectors.prediction.vote=true",
        "drift.detectors.concept.window_sizes=[100]",
        "drift.detectors.online.enabled=true",
    ]
    keys = {config_key(detectors_cfg("default", c)) for c in changed}
    assert len(keys) == len(changed) and config_key(base) not in keys
    assert len({config_key(detectors_cfg(o)) for o in OPTIONS}) == len(OPTIONS)


def test_a_threshold_calibration_says_it_is_running_until_it_ends(version_dir):
    """An online detector's bootstrap can take minutes: the job log must show it is alive, and stop
    saying so once the detector is built (a heartbeat left running would print forever)."""
    lines: list[str] = []
    build_suite(detectors_cfg("online+cvm"), version_dir, VERSION, say=lines.append, progress_every_s=0.001)
    starts = [i for i, line in enumerate(lines) if "calibrating" in line and "thresholds on" in line]
    assert starts, lines
    first = starts[0]
    name = lines[first].split("drift detector ")[1].split(":")[0]
    built = next(i for i, line in enumerate(lines) if f"drift detector {name}: built in" in line)
    beats = [line for line in lines[first + 1:built] if f"{name}: still calibrating" in line]
    assert beats, lines[first:built + 1]
    assert not any("still calibrating" in line for line in lines[built + 1:]
                   if f"drift detector {name}:" in line)


def test_the_calibration_heartbeat_stops_with_its_block():
    import time

    from foundry.drift.detectors import calibration_progress

    lines: list[str] = []
    with calibration_progress(lines.append, "x", every_s=0.01):
        time.sleep(0.1)
    said = len(lines)
    time.sleep(0.05)
    assert said >= 2 and len(lines) == said and lines[0].startswith("x: still calibrating (")
