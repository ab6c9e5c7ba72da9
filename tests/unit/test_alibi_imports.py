"""foundry/drift/alibi_imports.py: alibi-detect is imported without Hugging Face ``transformers``
(2-4 s off the monitor's start and the training job's detector build), and the names alibi-detect
took from it still work, imported on first use.

The first test fails without the mechanism (``import alibi_detect`` imports transformers); the
others check that the deferral hides nothing: the real objects come back, and a later
``import transformers`` is the real package."""

from __future__ import annotations

import subprocess
import sys
import types

from foundry.drift import alibi_imports
from tests.conftest import REPO_ROOT

# Every detector kind Foundry builds, built, saved, loaded back and run in a fresh process.
BUILD_SAVE_LOAD = """
import sys, tempfile
from pathlib import Path
from foundry import config, datasets
from foundry.drift.detectors import build_suite, load_or_build
from foundry.models.predictor import Predictor
from tests.versions import build_version_dir

fast = ["ert=100", "n_bootstraps=500", "window_sizes=[20]"]
variants = [["drift=default"],
            ["drift=default", "drift.detectors.multivariate.method=mmd", "drift.detectors.multivariate.n_permutations=20"],
            ["drift=online", "drift.detectors.online.enabled=true", "drift.detectors.concept.enabled=true",
             "drift.detectors.concept.method=fet_online", "drift.detectors.online.reference_rows=200",
             *("drift.detectors.online." + f for f in fast), *("drift.detectors.concept." + f for f in fast)],
            ["drift=online", "drift.detectors.online.enabled=true", "drift.detectors.online.method=mmd",
             "drift.detectors.online.reference_rows=200", *("drift.detectors.online." + f for f in fast)]]
cfg = config.load(["storage.root=/unused"])
version_dir = build_version_dir(cfg, Path(tempfile.mkdtemp()), rows=1500, steps=5)
preds = Predictor.from_dir(version_dir).predict(datasets.generate("churn", "baseline", 300, seed=2))
kinds = set()
for overrides in variants:
    detectors = config.load(["storage.root=/unused", *overrides]).drift.detectors
    build_suite(detectors, version_dir, "v1", say=lambda _: None).save(version_dir)
    suite = load_or_build(detectors, version_dir, "v1", say=print)
    suite.reset_online()
    x_num, x_cat = preds.encoded["x_num"], preds.encoded["x_cat"]
    ran = [r.detector for r in suite.test_window(x_num, x_cat, preds.proba)]
    if suite.concept is not None:
        ran.append(suite.test_concept(suite.errors(preds.proba, preds.proba.round())).detector)
    if suite.online is not None:
        ran.append(suite.update_online(x_num, x_cat).detector)
    kinds |= set(ran)
print(sorted(kinds))
print("alibi_detect" in sys.modules, "transformers" in sys.modules)
"""

DEFERRED_NAMES_RESOLVE = """
import sys, typing
import foundry.drift.detector_restore
import alibi_detect.models.pytorch.embedding as embedding
import alibi_detect.saving.saving as saving
names = (embedding.AutoConfig, embedding.AutoModel, saving.PreTrainedTokenizerBase)
typing.Optional[saving.PreTrainedTokenizerBase]  # what a signature does with it: no import
assert getattr(embedding.AutoConfig, "__origin__", None) is None
print("transformers" in sys.modules)
assert not isinstance(3, saving.PreTrainedTokenizerBase)  # first use: the real package is imported
import transformers
assert hasattr(transformers, "__path__") and transformers.__version__
assert embedding.AutoConfig.resolve() is transformers.AutoConfig
assert saving.PreTrainedTokenizerBase.resolve() is transformers.PreTrainedTokenizerBase
print("transformers" in sys.modules)
"""


def _run(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout.strip().splitlines()


def test_every_detector_kind_is_built_saved_and_loaded_without_importing_transformers():
    lines = _run(BUILD_SAVE_LOAD)
    assert lines[-2] == str(["concept", "multivariate", "online", "prediction", "tabular"]), lines
    assert lines[-1] == "True False", lines  # alibi-detect imported, transformers not


def test_the_names_alibi_detect_took_from_transformers_resolve_on_first_use():
    assert _run(DEFERRED_NAMES_RESOLVE) == ["False", "True"]


def test_an_already_imported_transformers_is_left_alone(monkeypatch):
    real = types.ModuleType("transformers")
    monkeypatch.setitem(sys.modules, "transformers", real)
    with alibi_imports.transformers_deferred():
        assert sys.modules["transformers"] is real
    assert sys.modules["transformers"] is real


def test_the_stand_in_leaves_sys_modules_when_the_block_ends(monkeypatch):
    monkeypatch.delitem(sys.modules, "transformers", raising=False)
    with alibi_imports.transformers_deferred():
        stand_in = sys.modules["transformers"]
        name = stand_in.AutoModel
        assert isinstance(name, alibi_imports.DeferredName) and "first use" in repr(name)
        assert not hasattr(stand_in, "__path__")  # not a package the import system would search
    assert "transformers" not in sys.modules
