"""Real model versions built without Ray, for tests whose subject is not training.

Serving, drift monitoring and self-healing need a registered version whose files are exactly what
the training job stages (weights, spec, preprocessor, reference sample, drift detectors), not the
training run itself, which costs a minute or two of Ray Data and Ray Train on a 2-core machine and
is covered by the training and pipeline tests. A few full-batch Adam steps make the model's errors
mean something (drift in its error stream is detectable).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from foundry import config, datasets
from foundry.config import FoundryConfig
from foundry.config.sources import STORED_CONFIG_FILE
from foundry.data import preprocessor as pp
from foundry.models import build_model, model_spec
from foundry.models.predictor import write_model_files
from foundry.models.tasks import PRIMARY_METRIC

REFERENCE_ROWS = 1000


def build_version_dir(cfg: FoundryConfig, out: Path, rows: int = 3000, reference_rows: int = REFERENCE_ROWS,
                      steps: int = 20, scenario: str = "baseline", flip_labels: float = 0.0,
                      output_bias: float = 0.0) -> Path:
    """Weights, spec, preprocessor and reference sample of a small churn model (a few training steps,
    so its errors mean something), in the files ``Predictor.from_dir`` and ``build_suite`` read, as the
    training job stages them."""
    data = cfg.data
    columns = [f.name for f in data.features] + [data.label]
    df = datasets.generate("churn", scenario, rows, seed=1)[columns]
    if flip_labels:  # a labelling bug: this share of the training labels swapped (a "bad challenger")
        flip = np.random.default_rng(5).random(len(df)) < flip_labels
        df.loc[flip, data.label] = 1 - df.loc[flip, data.label]
    train, reference = df.iloc[:-reference_rows], df.iloc[-reference_rows:]
    pre = pp.fit([pp.partial_stats(train, data)], data)
    spec = model_spec(cfg.model, pre)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(spec)
        enc = pre.transform_with_label(train)
        x_num, x_cat, y = (torch.from_numpy(enc[k]) for k in ("x_num", "x_cat", "y"))
        opt = torch.optim.Adam(model.parameters(), lr=0.02)
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x_num, x_cat).squeeze(1), y)
            loss.backward()
            opt.step()
    state = model.state_dict()
    if output_bias:  # a miscalibrated model: every logit shifted (a "bad challenger" that still runs)
        last = sorted(k for k in state if k.endswith(".bias"))[-1]
        state[last] = state[last] + output_bias
    write_model_files(out, state, spec, pre, reference)
    (out / STORED_CONFIG_FILE).write_text(config.to_yaml(cfg))  # what --from-version starts a retrain from
    return out


def register_version(registry, cfg: FoundryConfig, workdir: Path, rows: int = 3000, steps: int = 60,
                     alias: str | None = "production", scenario: str = "baseline", flip_labels: float = 0.0,
                     output_bias: float = 0.0) -> str:
    """Build, evaluate (on rows it never saw), attach drift detectors, register and alias a version."""
    from foundry.drift.detectors import build_suite
    from foundry.models.evaluation import evaluate_predictor
    from foundry.models.predictor import Predictor

    out = build_version_dir(cfg, workdir, rows=rows, steps=steps, scenario=scenario, flip_labels=flip_labels,
                            output_bias=output_bias)
    fresh = datasets.generate("churn", "baseline", 2000, seed=99)
    metrics = evaluate_predictor(Predictor.from_dir(out), [fresh])
    suite = build_suite(cfg.drift.detectors, out, cfg.model_name, say=lambda _: None)
    suite.save(out)
    metadata = {"task": cfg.data.task.value, "metrics": metrics, "primary_metric": PRIMARY_METRIC[cfg.data.task],
                "lineage": {"trigger": "manual", "parent_version": None, "code_version": "test"},
                "drift_detectors": {"built": True, "config_key": suite.config_key, "seconds": suite.build_seconds}}
    version = registry.register(cfg.model_name, out, metadata).version
    if alias:
        registry.set_alias(cfg.model_name, alias, version, reason="test setup")
    return version
