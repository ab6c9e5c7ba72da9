"""Warm start: train a new version from a registered one's preprocessor and weights.

Why: a drift retrain learns from the few thousand labelled live rows since the drift began. From
scratch, such a challenger lost to a champion trained on 6,000-69,000 rows on real data (AUC 0.87 vs
0.92): it relearnt from little what the champion already knew. Started from the champion, training
only moves what the recent rows contradict; and because the loop keeps the epoch with the best
validation loss, *counting the starting weights as a candidate*, the challenger is never worse than
the champion on the recent validation rows (if no epoch helps, it is the champion, and the gate
rejects it).

What is kept: the champion's fitted preprocessor (the same standardization and category indices, so
its weights mean the same thing; a category it never saw maps to the shared unknown row, which the
fine-tuning then learns) and its architecture spec (``model.json``; ``model.*`` keys of the new config
are not applied). Weights are read with safetensors only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from foundry.config import DataConfig, FeatureType, TrainerConfig
from foundry.data.preprocessor import Preprocessor
from foundry.errors import ConfigError, RegistryError
from foundry.models.predictor import PREPROCESSOR_FILE, SPEC_FILE, WEIGHTS_FILE


@dataclass(frozen=True)
class WarmStart:
    model: str
    version: str
    preprocessor: Preprocessor
    spec: dict
    weights: dict[str, torch.Tensor]
    temperature: float = 1.0  # its probability calibration (kept when training keeps its weights)


def parse(ref: str) -> tuple[str, str]:
    model, sep, version = ref.partition("@")
    if not model or not sep or not version:
        raise ConfigError(f"trainer.warm_start_from: expected MODEL@VERSION or MODEL@ALIAS, got {ref!r}")
    return model, version


def check_compatible(pre: Preprocessor, data: DataConfig, where: str) -> None:
    """The stored preprocessor must encode this data set: same label, classes and features."""
    numeric = [f.name for f in data.features if f.type is FeatureType.numeric]
    categorical = [f.name for f in data.features if f.type is not FeatureType.numeric]
    problems = []
    if pre.label != data.label:
        problems.append(f"label {pre.label!r} vs data.label {data.label!r}")
    if pre.task != data.task.value:
        problems.append(f"task {pre.task} vs data.task {data.task.value}")
    if data.classes is not None and pre.classes is not None and list(pre.classes) != list(data.classes):
        problems.append(f"classes {pre.classes} vs data.classes {list(data.classes)}")
    if [n.name for n in pre.numeric] != numeric:
        problems.append(f"numeric features {[n.name for n in pre.numeric]} vs {numeric}")
    if [c.name for c in pre.categorical] != categorical:
        problems.append(f"categorical features {[c.name for c in pre.categorical]} vs {categorical}")
    if problems:
        raise ConfigError(f"trainer.warm_start_from={where}: that version was trained on another schema ("
                          + "; ".join(problems) + "); train from scratch (trainer.warm_start_from=null)")


def load(trainer: TrainerConfig, data: DataConfig, registry) -> WarmStart | None:
    """The version named by ``trainer.warm_start_from`` (None when unset), checked against ``data``."""
    if not trainer.warm_start_from:
        return None
    model, ref = parse(trainer.warm_start_from)
    try:
        mv = registry.get(model, ref)
        path = Path(registry.fetch(model, mv.version))
    except RegistryError as exc:  # no such model, version or alias: the key is wrong
        # Anything else (storage unreachable) is not a configuration error: the job fails with it as it is,
        # and the drift monitor retries it (it does not retry exit code 2, which a retry would repeat).
        raise ConfigError(f"trainer.warm_start_from={trainer.warm_start_from}: {exc}") from exc
    pre = Preprocessor.from_json((path / PREPROCESSOR_FILE).read_text())
    check_compatible(pre, data, trainer.warm_start_from)
    spec = json.loads((path / SPEC_FILE).read_text())
    from foundry.train.calibration import read_temperature

    return WarmStart(model, mv.version, pre, spec, load_file(str(path / WEIGHTS_FILE), device="cpu"),
                     read_temperature(path))
