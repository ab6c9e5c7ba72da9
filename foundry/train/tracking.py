"""Optional experiment tracking with MLflow (``tracking.mlflow``, off by default; the ``tracking`` extra).

The registry (foundry/registry/) stays the record of what was trained and what serves; MLflow is a view
of the same runs in a UI many teams already use. Only parameters, metrics and tags are logged, never an
artifact: nothing in MLflow deserializes to code, and no model is kept in two places.

What a training job logs, in the experiment ``tracking.mlflow.experiment`` (null: ``model_name``):
- one run per job, named like the Ray Train run (``<model>-<UTC time>-<hex>``), tagged with
  ``foundry.model``, ``foundry.run_name``, ``foundry.trigger`` and, for a retrain, ``foundry.drift_episode``;
- params: the model and trainer config flattened to the keys a Hydra override uses (``trainer.lr``,
  ``model.hidden_sizes``), values written as in an override (``[64, 32]``, ``true``, ``null``);
- metrics per epoch (step = the epoch, from 0): ``EPOCH_METRICS``, logged as each epoch ends by a
  Ray Train ``UserCallback`` (``EpochLogger``). It runs in Ray Train's controller, which Ray places on
  the driver's node, so a local tracking folder is the driver's folder. Ray's ``setup_mlflow`` in the
  worker loop would instead open a run in the rank-0 worker (on any node, writing a local folder there;
  a new run after every restart of the worker group) that the driver could not finish;
- after the test evaluation: ``test_<metric>`` for each test metric; after registration the tags
  ``foundry.version`` (the registered version id), ``foundry.promoted`` and ``foundry.decision``.

With ``tune``, every trial is a child run of the job's run (Ray Tune's ``MLflowLoggerCallback``,
subclassed by ``trial_logger``, on the Tune driver): the trial's full params and its metrics per epoch;
the best trial is tagged ``foundry.best_trial``, and the job's run gets the best config's params and the
best trial's epochs.

Tracking never fails a job once it started: a tracking server that cannot be reached, at the start or
mid-run, costs a warning and the rest of the run's tracking (a self-healing retrain must not wait on a
dashboard). Enabling it without MLflow installed fails at the start, naming the key and the extra.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from enum import Enum
from pathlib import Path
from typing import Any

from ray.train.v2.api.callback import UserCallback

from foundry.config import FoundryConfig, MlflowTrackingConfig, ModelConfig, TrainerConfig
from foundry.errors import ConfigError

log = logging.getLogger(__name__)

EPOCH_METRICS = ("train_loss", "val_loss", "best_val_loss", "best_epoch", "rows_per_s")
MAX_TAG_CHARS = 5000  # MLflow's limit on a tag value is 8000 characters (5000 before 2.x)
# MLflow's own tag: its UI shows a run with it under that parent run.
PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "foundry.trial_id"


def require_mlflow():
    """The ``mlflow`` module, or a ConfigError that names the key and the extra to install."""
    try:
        import mlflow
    except ImportError as exc:
        raise ConfigError("tracking.mlflow.enabled: true, but MLflow is not installed: install the "
                          "`tracking` extra (pip install 'foundry[tracking]', which brings mlflow-skinny), "
                          "or set tracking.mlflow.enabled=false") from exc
    return mlflow


def tracking_uri(m: MlflowTrackingConfig, storage_root: str) -> str:
    """``tracking.mlflow.uri`` with a local folder as an absolute ``file://`` URI (Ray's controller runs
    in another working directory); null: ``<storage.root>/mlruns``."""
    uri = m.uri if m.uri is not None else f"{storage_root.rstrip('/')}/mlruns"
    if uri.startswith("file://"):
        return uri
    if "://" in uri or uri.startswith(("databricks", "sqlite:", "postgresql:", "mysql:", "mssql:")):
        return uri
    return Path(os.path.expanduser(uri)).resolve().as_uri()


def allow_file_store(uri: str) -> None:
    """MLflow 3 refuses its folder store (in maintenance mode) unless ``MLFLOW_ALLOW_FILE_STORE`` is set;
    it is what works without a server or a database (mlflow-skinny has no SQLAlchemy)."""
    if uri.startswith("file://"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def param_value(value: Any) -> str:
    """A config value as a Hydra override writes it."""
    if isinstance(value, Enum):
        return str(value.value)
    if value is None or isinstance(value, (bool, list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _flatten(f"{prefix}.{f.name}", getattr(value, f.name), out)
    elif isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    else:
        out[prefix] = param_value(value)


def flatten_params(model: ModelConfig, trainer: TrainerConfig) -> dict[str, str]:
    """The run's params: every ``model.*`` and ``trainer.*`` key, as a Hydra override names it."""
    out: dict[str, str] = {}
    _flatten("model", model, out)
    _flatten("trainer", trainer, out)
    return out


def trial_params(cfg: FoundryConfig, sampled: dict) -> dict[str, str]:
    """A Tune trial's params: the config the trial trains with (foundry/train/tuning.py), flattened."""
    from foundry.train.tuning import trial_config

    try:
        trial = trial_config(cfg, sampled)
    except ConfigError:  # the trial fails on it too; its run shows what was sampled
        out: dict[str, str] = {}
        for section, values in sampled.items():
            _flatten(section, dict(values), out)
        return out
    return flatten_params(trial.model, trial.trainer)


def epoch_metrics(report: dict) -> tuple[int, dict[str, float]]:
    """One epoch's report of the training loop (foundry/train/loop.py) as (step, MLflow metrics)."""
    values = {k: float(report[k]) for k in EPOCH_METRICS if isinstance(report.get(k), (int, float))}
    return int(report.get("epoch", 0)), values


def _metric_batch(report: dict) -> list:
    from mlflow.entities import Metric

    step, values = epoch_metrics(report)
    at = int(float(report.get("ended_at") or time.time()) * 1000)
    return [Metric(key, value, at, step) for key, value in values.items()]


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    allow_file_store(uri)
    return MlflowClient(tracking_uri=uri)


class EpochLogger(UserCallback):
    """Ray Train V2 callback: rank 0's report of each epoch, logged to the job's run as it arrives.

    Runs in Ray Train's controller (on the driver's node); any MLflow error logs a warning and ends the
    run's tracking, never the training."""

    def __init__(self, uri: str, run_id: str):
        self.uri, self.run_id = uri, run_id
        self._client = None
        self._broken = False

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        if self._broken or not metrics:
            return
        try:
            if self._client is None:
                self._client = _client(self.uri)
            self._client.log_batch(self.run_id, metrics=_metric_batch(metrics[0]))
        except Exception as exc:  # noqa: BLE001 -- tracking is a view: it must not fail the training
            self._broken = True
            log.warning("MLflow: logging epoch metrics to run %s failed (%s); this run goes on untracked",
                        self.run_id, exc)


@functools.cache
def _trial_logger_class():
    """Ray Tune's ``MLflowLoggerCallback`` (imported only when tracking a search), with Foundry's params,
    metrics and run names: each trial is a child run of the job's run."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class TrialLogger(MLflowLoggerCallback):
        def __init__(self, uri: str, experiment: str, parent_run_id: str, run_name: str, tags: dict,
                     params_of):
            super().__init__(uri, experiment_name=experiment, tags={**tags, PARENT_TAG: parent_run_id})
            self.run_name, self.params_of = run_name, params_of
            self._broken = False

        def setup(self, *args, **kwargs) -> None:
            try:
                super().setup(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 -- tracking must not fail the search
                self._broken, self._trial_runs = True, {}
                log.warning("MLflow: tracking the trials failed (%s); the search goes on untracked", exc)

        def log_trial_start(self, trial) -> None:
            if self._broken or trial in self._trial_runs:  # a paused trial resumed: same run
                return
            try:
                tags = {**self.tags, "trial_name": str(trial), TRIAL_TAG: trial.trial_id}
                # The name of the trial's Ray Train run (foundry/train/tuning.py)
                run = self.mlflow_util.start_run(tags=tags, run_name=f"{self.run_name}-{trial.trial_id}")
                self._trial_runs[trial] = run.info.run_id
                self.mlflow_util.log_params(run_id=run.info.run_id, params_to_log=self.params_of(trial.config))
            except Exception as exc:  # noqa: BLE001 -- tracking must not fail the search
                log.warning("MLflow: starting the run of trial %s failed (%s)", trial.trial_id, exc)

        def log_trial_result(self, iteration: int, trial, result: dict) -> None:
            if trial not in self._trial_runs:
                return
            try:
                step, values = epoch_metrics(result)
                self.mlflow_util.log_metrics(step=step, metrics_to_log=values, run_id=self._trial_runs[trial])
            except Exception as exc:  # noqa: BLE001
                log.warning("MLflow: logging trial %s's epoch failed (%s)", trial.trial_id, exc)

        def log_trial_end(self, trial, failed: bool = False) -> None:
            if trial not in self._trial_runs:
                return
            try:
                super().log_trial_end(trial, failed)
            except Exception as exc:  # noqa: BLE001
                log.warning("MLflow: ending the run of trial %s failed (%s)", trial.trial_id, exc)

    return TrialLogger


@dataclasses.dataclass
class Tracker:
    """One training job's MLflow run (``start``); with tracking off (or broken) every method does nothing."""

    uri: str | None = None
    experiment: str | None = None
    run_id: str | None = None
    run_name: str | None = None
    tags: dict = dataclasses.field(default_factory=dict)
    client: Any = dataclasses.field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.run_id is not None

    def _do(self, what: str, action) -> None:
        if not self.enabled:
            return
        try:
            action(self.client)
        except Exception as exc:  # noqa: BLE001 -- tracking is a view: it must not fail the job
            log.warning("MLflow: %s failed (%s); the rest of this job goes untracked", what, exc)
            self.run_id = None

    def train_callbacks(self) -> list:
        """Ray Train callbacks of a single training run (for ``RunConfig.callbacks``)."""
        return [EpochLogger(self.uri, self.run_id)] if self.enabled else []

    def tune_callbacks(self, cfg: FoundryConfig) -> list:
        """Ray Tune callbacks of a search: one child run per trial."""
        if not self.enabled:
            return []
        return [_trial_logger_class()(self.uri, self.experiment, self.run_id, self.run_name, self.tags,
                                      functools.partial(trial_params, cfg))]

    def log_params(self, model: ModelConfig, trainer: TrainerConfig) -> None:
        def log(c) -> None:
            from mlflow.entities import Param

            c.log_batch(self.run_id, params=[Param(k, v) for k, v in flatten_params(model, trainer).items()])

        self._do("logging params", log)

    def log_history(self, history: list[dict]) -> None:
        """Epochs trained elsewhere (the best Tune trial's), with the times they ended."""
        batch = [m for report in history for m in _metric_batch(report)]
        self._do("logging the epochs", lambda c: c.log_batch(self.run_id, metrics=batch))

    def log_test_metrics(self, metrics: dict) -> None:
        now = int(time.time() * 1000)

        def log(c) -> None:
            from mlflow.entities import Metric

            c.log_batch(self.run_id, metrics=[Metric(f"test_{k}", float(v), now, 0) for k, v in metrics.items()
                                              if isinstance(v, (int, float)) and not isinstance(v, bool)])

        self._do("logging the test metrics", log)

    def set_tags(self, tags: dict) -> None:
        def tag(c) -> None:
            from mlflow.entities import RunTag

            c.log_batch(self.run_id, tags=[RunTag(k, str(v)[:MAX_TAG_CHARS]) for k, v in tags.items() if v is not None])

        self._do("setting tags", tag)

    def mark_best_trial(self, trial_id: str) -> None:
        def mark(c) -> None:
            runs = c.search_runs([c.get_run(self.run_id).info.experiment_id],
                                 filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' "
                                               f"and tags.`{PARENT_TAG}` = '{self.run_id}'")
            for run in runs:
                c.set_tag(run.info.run_id, "foundry.best_trial", "true")

        self._do("tagging the best trial", mark)

    def end(self, failed: bool = False) -> None:
        self._do("ending the run", lambda c: c.set_terminated(self.run_id, "FAILED" if failed else "FINISHED"))


def start(m: MlflowTrackingConfig, storage_root: str, model_name: str, run_name: str, tags: dict,
          say=print) -> Tracker:
    """Open the job's run, or an inert ``Tracker`` when tracking is off. MLflow missing: ConfigError;
    the tracking store unreachable: a warning, and the job goes on untracked."""
    if not m.enabled:
        return Tracker()
    require_mlflow()
    uri = tracking_uri(m, storage_root)
    experiment = m.experiment or model_name
    tags = {"foundry.model": model_name, "foundry.run_name": run_name,
            **{k: str(v) for k, v in tags.items() if v is not None}}
    try:
        client = _client(uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            try:
                experiment_id = client.create_experiment(experiment)
            except Exception:  # another job created it meanwhile
                found = client.get_experiment_by_name(experiment)
                if found is None:
                    raise
                experiment_id = found.experiment_id
        else:
            experiment_id = found.experiment_id
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    except Exception as exc:  # noqa: BLE001 -- tracking is a view: it must not fail the job
        log.warning("MLflow at %s could not be reached", uri, exc_info=True)
        say(f"      MLflow: {uri} could not be reached ({type(exc).__name__}: {exc}); this job goes untracked")
        return Tracker()
    say(f"      MLflow: run {run_name} in experiment {experiment!r} at {uri}")
    return Tracker(uri=uri, experiment=experiment, run_id=run.info.run_id, run_name=run_name, tags=tags,
                   client=client)
