"""Train one model version end to end: data -> Ray Train -> test evaluation -> registry -> alias.

The order guarantees the registry's contract: nothing is written until the data has passed
validation and training has succeeded; the version's files are staged locally and published by the
registry in one step (invisible until complete); the alias moves last, and only when the
promotion policy says so.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import secrets
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from foundry.config import DriftConfig, FoundryConfig, PromotionPolicy
from foundry.config.sources import STORED_CONFIG_FILE
from foundry.data.pipeline import prepare
from foundry.data.schema import Problem, ValidationReport
from foundry.errors import AliasConflictError, ConfigError, DataValidationError, DriftSetupError
from foundry.models import model_spec
from foundry.models.evaluation import score_predictors
from foundry.models.predictor import REFERENCE_FILE, Predictor, write_model_files
from foundry.models.tasks import PRIMARY_METRIC
from foundry.rollout import target_alias
from foundry.runtime.node_loss import retry_on_node_loss
from foundry.runtime.workdir import stable_cwd
from foundry.train import gate, warm_start
from foundry.train.calibration import calibrate
from foundry.train.loop import BEST_WEIGHTS_FILE, STATE_FILE
from foundry.train.trainer import build_trainer
from foundry.train.tuning import TUNE_RESULTS_FILE

log = logging.getLogger(__name__)

# Fewer held-out rows than this make drift tests meaningless (the detectors' p-values need a sample).
MIN_REFERENCE_ROWS = 100
CONFIG_FILE = STORED_CONFIG_FILE  # what --from-version reads (foundry/config/sources.py)
HISTORY_FILE = "training_history.json"
# What a champion trained on another schema raises when scored on this data: a missing column (KeyError),
# a label outside its classes or an unparsable value (ValueError), a width mismatch (RuntimeError from torch).
SCHEMA_ERRORS = (KeyError, ValueError, RuntimeError)


@dataclass
class TrainOutcome:
    model: str
    version: str
    metrics: dict
    promoted: bool
    decision: str
    champion: str | None = None
    champion_metrics: dict | None = None
    timings_s: dict = field(default_factory=dict)


def code_version() -> str:
    """The git commit of the code that trained the model, when it can be known."""
    if os.environ.get("FOUNDRY_GIT_SHA"):
        return os.environ["FOUNDRY_GIT_SHA"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _stage_version(staging: Path, checkpoint_dir: str, spec: dict, prepared, resolved_yaml: str,
                   history: list[dict]) -> None:
    write_model_files(staging, Path(checkpoint_dir, BEST_WEIGHTS_FILE), spec, prepared.preprocessor,
                      prepared.reference)
    (staging / CONFIG_FILE).write_text(resolved_yaml)
    (staging / HISTORY_FILE).write_text(json.dumps(history, indent=2, default=float))


def _with_tuned_values(resolved_yaml: str, best: dict) -> str:
    """The stored config.yaml says what the version was really trained with: the best trial's values."""
    from omegaconf import OmegaConf

    conf = OmegaConf.create(resolved_yaml)
    for section, values in best.items():
        for key, value in values.items():
            OmegaConf.update(conf, f"{section}.{key}", value, force_add=True)
    return OmegaConf.to_yaml(conf)


@dataclass
class _Verdict:
    metrics: dict
    promote: bool
    decision: str
    champion: str | None
    champion_metrics: dict | None = None
    gate: dict | None = None


def _evaluate_and_decide(cfg: FoundryConfig, registry, staging: Path, prepared, say) -> _Verdict:
    """Score the new version and, for ``if_better``, the current one in the same pass over the same test
    rows, and let the gate (foundry/train/gate.py) decide whether the new one takes the alias."""
    policy = cfg.promotion.policy
    champion = registry.alias(cfg.model_name, cfg.promotion.alias)
    rivals, champion_dir = [Predictor.from_dir(staging)], None
    if policy is PromotionPolicy.if_better and champion is not None:
        # A registry or storage error fetching the champion fails the job (it is retried): only a champion
        # that loads but cannot score this data (another schema) is a reason to keep it unchallenged.
        champion_dir = registry.fetch(cfg.model_name, champion)
        rivals.append(Predictor.from_dir(champion_dir))
    say("[3/4] evaluating on the test split" + (f" with the current {cfg.promotion.alias} version {champion}, "
                                                "row by row" if len(rivals) > 1 else ""))
    scored = retry_on_node_loss(
        lambda: score_predictors(rivals, prepared.test_raw.iter_batches(batch_size=4096, batch_format="pandas")),
        "evaluating", cfg.data.execution_retries, say)
    if isinstance(scored[0], Exception):
        raise scored[0]
    metrics = scored[0].metrics
    say("      " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "rows"))
    if policy is PromotionPolicy.never:
        return _Verdict(metrics, False, "promotion.policy=never", champion)
    if policy is PromotionPolicy.always or champion is None:
        return _Verdict(metrics, True, "promotion.policy=always" if champion else "no current version", champion)
    if isinstance(scored[1], SCHEMA_ERRORS):  # a champion built for another schema cannot score this data
        return _Verdict(metrics, False, f"kept {champion}: it could not be evaluated on this data ({scored[1]})",
                        champion)
    if isinstance(scored[1], Exception):  # anything else is a fault, not a verdict: the job fails (and is retried)
        raise scored[1]
    forgetting = None
    if cfg.promotion.max_forgetting is not None:
        forgetting = _forgetting(rivals, Path(champion_dir))
    result = gate.decide(cfg.data.task, scored[1].rows, scored[0].rows, cfg.promotion, forgetting)
    decision = f"{'promoted over' if result.promote else 'kept'} {champion}: {result.reason}"
    say(f"      gate: {decision}")
    return _Verdict(metrics, result.promote, decision, champion, scored[1].metrics, result.to_dict())


def _forgetting(rivals: list[Predictor], champion_dir: Path) -> float | None:
    """Relative loss increase of the new version over the current one on the current one's reference
    sample (held-out rows of the data it was trained on: the old world)."""
    import pandas as pd

    path = champion_dir / REFERENCE_FILE
    if not path.exists():
        return None
    new, old = score_predictors(rivals, [pd.read_parquet(path)])
    if isinstance(new, Exception) or isinstance(old, Exception):
        return None
    base = float(old.rows.loss.mean())
    return (float(new.rows.loss.mean()) - base) / max(base, 1e-15)


def train_and_register(cfg: FoundryConfig, resolved_yaml: str, say=print) -> TrainOutcome:
    """With ``tracking.mlflow.enabled`` the job is an MLflow run too (foundry/train/tracking.py), ended as
    FAILED if the job fails."""
    from foundry.train import tracking

    run_name = f"{cfg.model_name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    commit = code_version() if cfg.tracking.mlflow.enabled else "unknown"
    tracker = tracking.start(cfg.tracking.mlflow, cfg.storage.root, cfg.model_name, run_name,
                             {"foundry.trigger": cfg.trigger, "foundry.drift_episode": cfg.drift_episode,
                              "mlflow.source.git.commit": None if commit == "unknown" else commit}, say)
    try:
        outcome = _train_and_register(cfg, resolved_yaml, say, run_name, tracker)
    except BaseException:
        tracker.end(failed=True)
        raise
    tracker.end()
    return outcome


def _train_and_register(cfg: FoundryConfig, resolved_yaml: str, say, run_name: str, tracker) -> TrainOutcome:
    from foundry.datasets import ensure_source
    from foundry.registry.store import ANY

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    registry = cfg.storage.layout.open_registry()
    path = ensure_source(cfg.data.source)
    say(f"[1/4] validating and preparing {path}")
    retries = cfg.data.execution_retries
    warm = warm_start.load(cfg.trainer, cfg.data, registry)
    if warm is not None:
        say(f"      warm start from {warm.model} version {warm.version}: its preprocessor and weights")
    fitted = warm.preprocessor if warm is not None else None
    prepared = retry_on_node_loss(lambda: prepare(cfg.data, fitted), "preparing the data", retries, say)
    say(f"      {prepared.report.format()}; split rows {prepared.split_rows}; fingerprint {prepared.fingerprint}; "
        f"drift reference sample {len(prepared.reference)} rows")
    check_reference(cfg, prepared.reference)
    timings["prepare"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    tracker.set_tags({"foundry.data_fingerprint": prepared.fingerprint})
    tuned = None
    if cfg.tune.enabled:
        from foundry.train.tuning import tune_fit

        if warm is not None:
            raise ConfigError("trainer.warm_start_from does not combine with tune (trials start from scratch); "
                              "set one of them to null")
        say(f"[2/4] tuning {cfg.model.arch} with Ray Tune (run {run_name})")
        with stable_cwd():  # the driver's working_dir can vanish during a long Tuner.fit (foundry/runtime/workdir.py)
            tuned = tune_fit(cfg, prepared, run_name, say=say, callbacks=tracker.tune_callbacks(cfg))
        cfg, spec, checkpoint = tuned.cfg, tuned.spec, tuned.checkpoint
        resolved_yaml = _with_tuned_values(resolved_yaml, tuned.best["config"])
        tracker.log_params(cfg.model, cfg.trainer)  # the best trial's config
        tracker.mark_best_trial(tuned.best["trial_id"])
    else:
        spec = warm.spec if warm is not None else model_spec(cfg.model, prepared.preprocessor)
        say(f"[2/4] training {cfg.model.arch} {list(cfg.model.hidden_sizes)} with {cfg.trainer.num_workers} "
            f"worker(s), gpu={cfg.trainer.use_gpu}, up to {cfg.trainer.epochs} epochs (run {run_name})")
        tracker.log_params(cfg.model, cfg.trainer)
        trainer = build_trainer(cfg, {"train": prepared.train, "val": prepared.val}, spec, run_name,
                                callbacks=tracker.train_callbacks() or None,
                                init_weights=warm.weights if warm is not None else None)
        if cfg.drift.enabled:
            prefetch_imports(DETECTOR_MODULES)
        checkpoint = trainer.fit().checkpoint
    with checkpoint.as_directory() as checkpoint_dir:
        final_state = json.loads(Path(checkpoint_dir, STATE_FILE).read_text())
    history, resumes = final_state["history"], final_state.get("resumes", [])
    if tuned is not None:  # the trials' epochs went to their own runs; the job's run gets the best one's
        tracker.log_history(history)
    for resume in resumes:
        say(f"      resumed from the checkpoint of epoch {resume['at_epoch'] - 1} after a worker failure")
    if history:  # each epoch's line was printed live by rank 0 (foundry/train/loop.py): a summary here
        last = history[-1]
        best = int(last["best_epoch"])
        say(f"      {len(history)} epoch(s) run; best: " + (f"epoch {best}" if best >= 0 else "the starting weights")
            + f" (val_loss {last['best_val_loss']:.4f})")
    timings["train"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="foundry-version-") as tmp:
        staging = Path(tmp)
        with checkpoint.as_directory() as checkpoint_dir:
            _stage_version(staging, checkpoint_dir, spec, prepared, resolved_yaml, history)
        kept_weights = warm is not None and bool(history) and int(history[-1]["best_epoch"]) < 0
        calibration = calibrate(staging, prepared.val, say,
                                kept_from=(warm.version, warm.temperature) if kept_weights else None)
        if tuned is not None:
            (staging / TUNE_RESULTS_FILE).write_text(json.dumps(
                {"best": tuned.best, "trials": tuned.trials, "seconds": tuned.seconds}, indent=2, default=str))
        verdict = _evaluate_and_decide(cfg, registry, staging, prepared, say)
        metrics, promote, decision, champion = verdict.metrics, verdict.promote, verdict.decision, verdict.champion
        champion_metrics = verdict.champion_metrics
        tracker.log_test_metrics(metrics)
        timings["evaluate"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        drift_detectors = _build_detectors(cfg.drift, staging, run_name, say)
        timings["drift_detectors"] = time.perf_counter() - t3
        metadata = {
            "task": cfg.data.task.value,
            "metrics": metrics,
            "primary_metric": PRIMARY_METRIC[cfg.data.task],
            "champion_at_training": {"version": champion, "metrics_on_same_test_split": champion_metrics},
            "data": {"source": prepared.source_path, "fingerprint": prepared.fingerprint,
                     "rows": prepared.report.rows, "split_rows": prepared.split_rows,
                     "name": cfg.data.name},
            "training": {"run_name": run_name, "epochs_run": len(history),
                         "best_epoch": int(history[-1]["best_epoch"]) if history else None,
                         "warm_start": None if warm is None else {
                             "version": f"{warm.model}@{warm.version}",
                             "initial_val_loss": final_state.get("initial_val_loss"),
                             "kept_starting_weights": kept_weights},
                         "num_workers": cfg.trainer.num_workers, "use_gpu": cfg.trainer.use_gpu,
                         "device": final_state.get("device"), "amp": final_state.get("amp"),
                         "sync": final_state.get("sync"),
                         "resumed_at_epochs": [r["at_epoch"] for r in resumes],
                         "resumes": [{k: r[k] for k in ("at_epoch", "checkpoint", "restored") if k in r}
                                     for r in resumes]},
            "lineage": {"code_version": code_version(), "trigger": cfg.trigger, "parent_version": champion,
                        "ray_job_id": _ray_job_id(), "submission_id": _submission_id(),
                        "drift_episode": cfg.drift_episode},
            "promotion": {"promoted": promote, "decision": decision, "policy": cfg.promotion.policy.value,
                          "min_improvement": cfg.promotion.min_improvement, "gate": verdict.gate},
            "calibration": calibration,
            "drift_detectors": drift_detectors,
            "tuning": None if tuned is None else tuned.summary(),
            "timings_s": timings,
        }
        say(f"[4/4] registering {cfg.model_name} in {registry.root}")
        version = registry.register(cfg.model_name, staging, metadata)
    tracker.set_tags({"foundry.version": version.version})
    # With a champion and promotion.rollout=shadow|canary the version becomes the candidate: the drift
    # monitor's live roll-out decides whether it takes production (foundry/rollout/).
    alias = target_alias(cfg.promotion) if champion else cfg.promotion.alias
    if promote:
        try:  # compare-and-set: a promotion decided against `champion` must not overwrite another one's
            if alias != cfg.promotion.alias:
                now = registry.alias(cfg.model_name, cfg.promotion.alias)
                if now != champion:
                    raise AliasConflictError(f"{cfg.promotion.alias} moved from {champion} to {now} meanwhile")
                decision += f"; the {cfg.promotion.rollout.value} roll-out on live traffic decides"
            registry.set_alias(cfg.model_name, alias, version.version, reason=decision,
                               expected=champion if alias == cfg.promotion.alias else ANY)
        except AliasConflictError as exc:
            promote, decision = False, f"not promoted: {exc}"
    say(f"      version {version.version} registered; {alias}: "
        f"{'moved to it' if promote else 'unchanged'} ({decision})")
    tracker.set_tags({"foundry.promoted": str(promote).lower(), "foundry.decision": decision})
    return TrainOutcome(cfg.model_name, version.version, metrics, promote, decision, champion, champion_metrics,
                        timings)


# What building the drift detectors imports: ~3 s here (alibi-detect, scikit-learn, SciPy), on the critical
# path of every retrain unless it happens while the driver only waits for Ray Train.
DETECTOR_MODULES = ("foundry.drift.detectors", "foundry.drift.detector_restore")


def prefetch_imports(modules: tuple[str, ...]) -> threading.Thread:
    """Import ``modules`` in a daemon thread while ``trainer.fit()`` blocks the driver (time to heal: the
    retrain job's driver is idle during training). The main thread imports nothing new meanwhile but Ray
    Train's own modules, which were imported by ``build_trainer``; an import error is left for the real
    import to raise where it is handled."""
    def work() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 -- raised again, and handled, by the import that needs it
                log.debug("prefetching %s failed", name, exc_info=True)

    thread = threading.Thread(target=work, name="foundry-prefetch-imports", daemon=True)
    thread.start()
    return thread


def check_reference(cfg: FoundryConfig, reference) -> None:
    """A version that will be monitored needs a drift reference sample worth testing against: fail the
    job (nothing registered) rather than register a model no monitor can watch."""
    if not cfg.drift.enabled:
        return
    needed = min(MIN_REFERENCE_ROWS, cfg.data.reference_rows)
    if len(reference) < needed:
        raise DataValidationError(ValidationReport(rows=len(reference), problems=[Problem(
            "*", "drift reference sample too small", len(reference),
            f"{len(reference)} held-out rows drawn, at least {needed} needed: more rows, larger data.split.val/test "
            "fractions, or drift.enabled=false to train a model without monitoring")]))


def _build_detectors(drift: DriftConfig, staging: Path, name: str, say) -> dict:
    """Build and calibrate the drift detectors now (the job has the CPU budget), stored with the version.

    A failure fails the job before anything is registered: a version without detectors would be
    served with nothing watching it (set ``drift.enabled=false`` to train one on purpose).
    """
    if not drift.enabled:
        return {"built": False, "reason": "drift.enabled=false"}
    from foundry.drift.detectors import build_suite

    say("      building drift detectors on the reference sample")
    try:
        suite = build_suite(drift.detectors, staging, name, say=say)
        suite.save(staging)  # DETECTOR_FILES: data only, never a pickle
    except Exception as exc:
        log.exception("building drift detectors failed")
        raise DriftSetupError(f"the drift detectors could not be built on the reference sample "
                              f"({type(exc).__name__}: {exc}); nothing was registered. Fix conf/drift, or set "
                              "drift.enabled=false to train a model without monitoring") from exc
    return {"built": True, "config_key": suite.config_key, "seconds": suite.build_seconds}


def _submission_id() -> str | None:
    """The Jobs API submission id of this job (Ray passes it in the driver's job config), else None: the
    monitor reads a retrain's outcome by it."""
    try:
        return json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}"))["metadata"]["job_submission_id"]
    except (ValueError, KeyError, TypeError):
        return None


def _ray_job_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_job_id() if ray.is_initialized() else None
    except Exception:
        return None
