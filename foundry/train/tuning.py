"""Ray Tune over the training loop: every trial is a Ray Train run, ASHA stops the trailing ones.

Ray 2.60's Train V2 + Tune pattern: the Tune trainable is a small *driver* function that builds a
``TorchTrainer`` for its sampled hyperparameters and calls ``fit()``; ``TuneReportCallback`` hands
each epoch's report to Tune, so ASHA can stop a trial between epochs. The driver only launches and
watches its Train run, hence ``tune.trial_driver_cpus`` defaults to a token 0.01 (Tune cannot place a
trial that asks for nothing): on a small cluster a CPU per driver would starve the workers it waits for. The training loop is the same one ``jobs.train``
runs, so a tuned version is built, checkpointed and evaluated exactly like a trained one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field

from foundry import storage
from foundry.config import FoundryConfig, SearchDimension, SearchKind, TuneConfig, validate
from foundry.errors import ConfigError
from foundry.models import model_spec
from foundry.train.trainer import build_trainer

log = logging.getLogger(__name__)

TUNE_RESULTS_FILE = "tune_results.json"
# Tune's own output: 1 prints the trial table (status, sampled values, last metrics) as trials run and at
# the end, in the job's log; each trial's epoch lines come from its rank-0 worker (foundry/train/loop.py).
TUNE_VERBOSITY = 1
SECTIONS = ("model", "trainer")


@dataclass
class TuneOutcome:
    checkpoint: object  # ray.train.Checkpoint of the best trial (its last epoch holds its best weights)
    cfg: FoundryConfig  # the config with the best trial's hyperparameters
    spec: dict  # the best trial's model spec
    best: dict  # {"trial_id", "config", "metrics"}
    trials: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict:
        """What the registry keeps in the version's metadata (the full table goes to tune_results.json)."""
        stopped = sum(1 for t in self.trials if t["status"] == "stopped_by_scheduler")
        failed = sum(1 for t in self.trials if t["status"] == "error")
        return {"trials": len(self.trials), "stopped_by_scheduler": stopped, "failed": failed,
                "best_trial": self.best["trial_id"], "best_config": self.best["config"],
                "best_metric": self.best["metrics"], "seconds": round(self.seconds, 2),
                "results_file": TUNE_RESULTS_FILE}


def _dimension(dim: SearchDimension):
    from ray import tune

    if dim.kind is SearchKind.choice:
        return tune.choice(list(dim.values))
    if dim.kind is SearchKind.grid:
        return tune.grid_search(list(dim.values))
    if dim.kind is SearchKind.uniform:
        return tune.uniform(dim.low, dim.high)
    if dim.kind is SearchKind.loguniform:
        return tune.loguniform(dim.low, dim.high)
    return tune.randint(int(dim.low), int(dim.high))


def search_space(t: TuneConfig) -> dict:
    """Tune's param_space: ``{"model": {...}, "trainer": {...}}`` with Tune's sampling objects."""
    return {section: {key: _dimension(dim) for key, dim in getattr(t.space, section).items()}
            for section in SECTIONS if getattr(t.space, section)}


def _plain(value):
    """Tune hands back lists as lists and numbers as numpy scalars sometimes; keep JSON/dataclass-friendly."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def apply_trial(cfg: FoundryConfig, sampled: dict) -> FoundryConfig:
    """The config of one trial: the sampled model/trainer keys set, resources from ``tune.*``, checked."""
    model = dataclasses.replace(cfg.model, **{k: _plain(v) for k, v in sampled.get("model", {}).items()})
    trainer = dataclasses.replace(cfg.trainer, **{k: _plain(v) for k, v in sampled.get("trainer", {}).items()})
    if cfg.tune.trial_num_workers is not None:
        trainer = dataclasses.replace(trainer, num_workers=cfg.tune.trial_num_workers)
    trial = dataclasses.replace(cfg, model=model, trainer=trainer)
    try:
        return validate(trial)
    except ConfigError as exc:
        raise ConfigError(f"tune.space produced an invalid trial {sampled}: {exc}") from exc


def trial_config(cfg: FoundryConfig, sampled: dict) -> FoundryConfig:
    """What one trial trains with: ``apply_trial``, checkpointing every epoch (ASHA may stop a trial after
    any epoch, and a trial ranks only with a checkpoint)."""
    trial_cfg = apply_trial(cfg, sampled)
    return dataclasses.replace(trial_cfg, trainer=dataclasses.replace(trial_cfg.trainer, checkpoint_every_s=0.0))


def _trial(sampled: dict, *, cfg: FoundryConfig, datasets: dict, preprocessor, run_name: str) -> None:
    """One trial: a Ray Train run of the shared training loop whose every epoch is reported to Tune."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_cfg = trial_config(cfg, sampled)
    spec = model_spec(trial_cfg.model, preprocessor)
    name = f"{run_name}-{tune.get_context().get_trial_id()}"
    # A sweep's job outlives a failed trial: its placement group must be freed by Ray Train's cleaner.
    build_trainer(trial_cfg, datasets, spec, name, callbacks=[TuneReportCallback()], placement_group_cleaner=True).fit()


def _trial_status(result, max_t: int) -> str:
    if result.error is not None:
        return "error"
    metrics = result.metrics or {}
    if metrics.get("early_stopped"):
        return "early_stopped"  # the loop's own patience rule
    if metrics.get("training_iteration", 0) < max_t:
        return "stopped_by_scheduler"
    return "completed"


def _best_value(result, metric: str, mode: str):
    frame = result.metrics_dataframe
    if frame is None or metric not in frame:
        return None
    return float(frame[metric].min() if mode == "min" else frame[metric].max())


def tune_fit(cfg: FoundryConfig, prepared, run_name: str, say=print, callbacks: list | None = None) -> TuneOutcome:
    """Run the search on the prepared datasets; the best trial's checkpoint and config come back.
    ``callbacks``: Ray Tune callbacks (MLflow's trial runs, foundry/train/tracking.py)."""
    import ray.train
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    t = cfg.tune
    max_t = t.scheduler.max_t or cfg.trainer.epochs
    space = search_space(t)
    say(f"      Ray Tune: {t.num_samples} sample(s) over {', '.join(f'{s}.{k}' for s in space for k in space[s])}; "
        f"ASHA on {t.metric} ({t.mode}), grace {t.scheduler.grace_period} epoch(s), max {max_t}; "
        f"{t.max_concurrent_trials} trial(s) at once")
    trainable = tune.with_parameters(_trial, cfg=cfg, datasets={"train": prepared.train, "val": prepared.val},
                                     preprocessor=prepared.preprocessor, run_name=run_name)
    trainable = tune.with_resources(trainable, {"cpu": t.trial_driver_cpus})
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=t.metric, mode=t.mode, num_samples=t.num_samples,
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=max_t,
                                    grace_period=t.scheduler.grace_period, reduction_factor=t.scheduler.reduction_factor),
            # The generator itself limits trials in flight: Tune ignores TuneConfig.max_concurrent_trials
            # (with a warning) when the search algorithm is a SearchGenerator like this one.
            search_alg=BasicVariantGenerator(random_state=t.seed, max_concurrent=t.max_concurrent_trials),
        ),
        run_config=tune.RunConfig(name=f"{run_name}-tune", storage_path=cfg.storage.layout.checkpoints,
                                  verbose=TUNE_VERBOSITY, callbacks=callbacks or None),
    )
    started = time.perf_counter()
    grid = tuner.fit()
    seconds = time.perf_counter() - started

    trials = []
    for result in grid:
        metrics = result.metrics or {}
        trials.append({
            "trial_id": metrics.get("trial_id"),
            "config": {s: {k: _plain(v) for k, v in result.config.get(s, {}).items()} for s in SECTIONS
                       if s in result.config},
            "status": _trial_status(result, max_t),
            "epochs": metrics.get("training_iteration", 0),
            t.metric: _best_value(result, t.metric, t.mode),
            "error": None if result.error is None else f"{type(result.error).__name__}: {result.error}"[:500],
            "checkpoint_path": metrics.get("checkpoint_path"),
        })
    ranked = sorted((tr for tr in trials if tr[t.metric] is not None and tr["checkpoint_path"]),
                    key=lambda tr: tr[t.metric], reverse=t.mode == "max")
    if not ranked:
        errors = "; ".join(tr["error"] for tr in trials if tr["error"]) or "no trial reported a checkpoint"
        raise RuntimeError(f"Ray Tune: no trial finished an epoch ({len(trials)} trial(s)): {errors}")
    for tr in ranked + [tr for tr in trials if tr not in ranked]:
        value = "-" if tr[t.metric] is None else f"{tr[t.metric]:.4f}"
        say(f"      trial {tr['trial_id']}: {t.metric} {value} after {tr['epochs']} epoch(s), {tr['status']}  "
            f"{json.dumps(tr['config'])}")
    best = ranked[0]
    fs, _ = storage.resolve(cfg.storage.layout.checkpoints)
    checkpoint = ray.train.Checkpoint(path=best["checkpoint_path"], filesystem=fs)
    best_cfg = apply_trial(cfg, best["config"])
    spec = model_spec(best_cfg.model, prepared.preprocessor)
    say(f"      best trial {best['trial_id']}: {t.metric} {best[t.metric]:.4f} ({len(trials)} trials in {seconds:.0f} s)")
    return TuneOutcome(checkpoint=checkpoint, cfg=best_cfg, spec=spec,
                       best={"trial_id": best["trial_id"], "config": best["config"],
                             "metrics": {t.metric: best[t.metric]}},
                       trials=trials, seconds=seconds)
