"""The inference core shared by batch evaluation (Ray Data) and online serving (Ray Serve).

A ``Predictor`` is rebuilt from the files of one model version: the architecture spec (JSON), the
weights (safetensors: no code runs on load) and the fitted preprocessor (JSON). Raw feature rows go
in; predictions in the label's own values come out, so callers never re-implement decoding.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from foundry.config import Task
from foundry.data.preprocessor import Preprocessor
from foundry.models import build_model
from foundry.models.tasks import probabilities

WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "model.json"
PREPROCESSOR_FILE = "preprocessor.json"
REFERENCE_FILE = "reference.parquet"  # training rows the drift detectors compare live traffic with

# Batches from Ray's object store are read-only arrays; torch warns when it wraps one. Inference never writes
# into its input tensors (``logits`` runs under inference_mode), so the warning is noise in job and replica logs.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning,
                        module=__name__)


def write_model_files(out: Path, weights: dict[str, torch.Tensor] | Path, spec: dict,
                      preprocessor: Preprocessor, reference: pd.DataFrame) -> None:
    """The files every reader of a version relies on (``Predictor.from_dir``, the drift monitor),
    written in one place: weights as safetensors (``weights``: tensors, or a safetensors file to copy),
    the spec and preprocessor as JSON, the reference sample as Parquet."""
    import shutil

    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    if isinstance(weights, Path):
        shutil.copyfile(weights, out / WEIGHTS_FILE)
    else:
        save_file(weights, str(out / WEIGHTS_FILE))
    (out / SPEC_FILE).write_text(json.dumps(spec, indent=2))
    (out / PREPROCESSOR_FILE).write_text(preprocessor.to_json())
    reference.to_parquet(out / REFERENCE_FILE, index=False)


@dataclass
class Predictions:
    outputs: np.ndarray  # raw network outputs
    index: np.ndarray | None  # predicted class index (classification)
    values: np.ndarray  # predicted label values (class labels, or regression values)
    proba: np.ndarray | None  # class probabilities (classification)
    encoded: dict[str, np.ndarray] | None = None  # the preprocessed inputs (x_num, x_cat): what drift tests see


class Predictor:
    def __init__(self, spec: dict, weights: dict[str, torch.Tensor], preprocessor: Preprocessor,
                 device: str = "cpu", temperature: float = 1.0):
        self.spec = spec
        self.temperature = temperature  # probability calibration (foundry.train.calibration)
        self.preprocessor = preprocessor
        self.task = Task(preprocessor.task)
        self.device = torch.device(device)
        self.model = build_model(spec)
        self.model.load_state_dict(weights)
        self.model.to(self.device).eval()

    @classmethod
    def from_dir(cls, path: str | Path, device: str = "cpu") -> Predictor:
        path = Path(path)
        spec = json.loads((path / SPEC_FILE).read_text())
        fitted = Preprocessor.from_json((path / PREPROCESSOR_FILE).read_text())
        from foundry.train.calibration import read_temperature

        return cls(spec, load_file(str(path / WEIGHTS_FILE), device="cpu"), fitted, device=device,
                   temperature=read_temperature(path))

    def logits(self, x_num: np.ndarray | None, x_cat: np.ndarray | None) -> np.ndarray:
        """The network's raw outputs for encoded inputs (uncalibrated)."""
        x_num_t = torch.from_numpy(np.asarray(x_num)).to(self.device) if x_num is not None and x_num.shape[1] else None
        x_cat_t = torch.from_numpy(np.asarray(x_cat)).to(self.device) if x_cat is not None and x_cat.shape[1] else None
        with torch.inference_mode():
            return self.model(x_num_t, x_cat_t).float().cpu().numpy()

    def predict(self, df: pd.DataFrame) -> Predictions:
        encoded = self.preprocessor.transform(df)
        outputs = self.logits(encoded["x_num"], encoded["x_cat"])
        proba = probabilities(self.task, outputs / self.temperature) if self.task is not Task.regression else None
        if proba is None:
            values = self.preprocessor.decode_regression(outputs.reshape(-1))
            return Predictions(outputs, None, values, None, encoded)
        index = proba.argmax(axis=1)
        classes = np.asarray(self.preprocessor.classes, dtype=object)
        return Predictions(outputs, index, classes[index], proba, encoded)
