"""From data to a watched model in one job: ``python -m jobs.pipeline [hydra overrides]``.

1. prepare and validate the data (Ray Data), optionally search hyperparameters (``tune=asha`` or
   ``tune=quick``: Ray Tune + ASHA), train (Ray Train, ``trainer.num_workers`` workers), evaluate,
   register the version and promote it if it beats production (``jobs.train`` does the same);
2. deploy the Serve application on ``serve.model_ref`` (production), or swap the running one in place;
3. start the model's drift monitor (a detached actor: it outlives this job and, on drift, submits
   the retraining job itself).

Runs locally against ``python -m cluster up`` or on any cluster through the Jobs API:

    ray job submit --working-dir . \\
        --runtime-env-json '{"env_vars": {"FOUNDRY_API_KEY_SHA256": "'$(python -m foundry.serving.auth)'"}}' \\
        -- python -m jobs.pipeline tune=quick

The job gets only the Serve API key's SHA-256 (``$FOUNDRY_API_KEY_SHA256``; Ray logs a job's
runtime_env in full), or the replicas read ``serve.auth.api_key_file`` on the nodes. Exit codes: 0 done, 2 bad config or key, 3 bad data, 4 registry problem, 5 Serve failed, 1 other.
"""

from __future__ import annotations

import time

from foundry.config import sources as config_sources
from foundry.console.entry import exit_when_done, run_or_exit, setup_logging
from foundry.errors import FoundryError

STAGES = 3


def _say(step: int, text: str) -> None:
    print(f"== pipeline [{step}/{STAGES}] {text}", flush=True)


def pipeline(sources: config_sources.ConfigSources) -> dict:
    from omegaconf import OmegaConf

    from foundry import config as foundry_config
    from foundry.runtime.connection import configure_data, connect
    from foundry.serving import control
    from foundry.train.workflow import train_and_register
    from jobs import monitor as monitor_job
    from serve_apps.deploy import api_key_runtime_env

    raw = config_sources.compose(sources)
    cfg = foundry_config.to_typed(raw)  # every value checked before any Ray work
    runtime_env = api_key_runtime_env(cfg.serve)  # a missing API key fails here, before an hour of training
    connect(cfg.ray.address, driver_env=cfg.cluster.driver_env)
    configure_data(cfg.ray.data_progress_bars)
    t0 = time.perf_counter()
    _say(1, f"train {cfg.model_name} ({'Ray Tune search, ' if cfg.tune.enabled else ''}"
            f"{cfg.trainer.num_workers} Ray Train worker(s))")
    outcome = train_and_register(cfg, OmegaConf.to_yaml(raw, resolve=True))
    print(f"registered {outcome.model} version {outcome.version}: "
          + ", ".join(f"{k}={v:.4f}" for k, v in outcome.metrics.items() if k != "rows"), flush=True)

    _say(2, f"deploy Serve application {cfg.serve.app_name!r} on {cfg.model_name}@{cfg.serve.model_ref}")
    before = _served_before(control, cfg.serve.app_name)
    deployed = control.deploy(cfg, runtime_env=runtime_env, pin=True, check=True)
    print(f"Serve application {deployed.app_name!r} is RUNNING at {deployed.url}: {cfg.model_name} "
          f"{deployed.version}", flush=True)

    monitor = None
    if cfg.drift.enabled:
        _say(3, f"start the drift monitor of {cfg.model_name}")
        try:
            _, status = monitor_job.start(cfg)
        except Exception as exc:
            _unserve(control, cfg, before)
            restored = f"Serve is back on {before}" if before else "the Serve application was removed"
            raise MonitorStartError(f"the drift monitor of {cfg.model_name} did not start ({type(exc).__name__}: "
                                    f"{exc}); {restored} so that no model is served without its monitor "
                                    "(drift.enabled=false serves one unwatched on purpose)") from exc
        monitor = monitor_job.actor_options(cfg)["name"]
        print(f"monitor {monitor!r} is watching {cfg.model_name} {status['reference_version']} "
              f"(phase {status['controller']['phase']})", flush=True)
    else:
        _say(3, "drift.enabled=false: no monitor")
    result = {"model": outcome.model, "version": outcome.version, "promoted": outcome.promoted,
              "decision": outcome.decision, "serving": deployed.version, "url": deployed.url, "monitor": monitor,
              "seconds": round(time.perf_counter() - t0, 1)}
    print(f"pipeline done in {result['seconds']:.0f} s: {cfg.model_name} {deployed.version} serving at "
          f"{deployed.url}" + (f", watched by {monitor}" if monitor else ""), flush=True)
    return result


class MonitorStartError(FoundryError):
    exit_code = 5


def _served_before(control, app_name: str) -> str | None:
    """The version the application served before this deploy (None: it was not deployed)."""
    from foundry.serving.holder import ModelSpec

    try:
        return ModelSpec.from_user_config(control.current_user_config(app_name)).version
    except Exception:
        return None


def _unserve(control, cfg, before: str | None) -> None:
    """Put Serve back as it was: the previous version in place, or no application at all."""
    try:
        if before:
            control.set_model_version(cfg.serve.app_name, before, cfg.data)
        else:
            control.delete_app(cfg.serve.app_name)
    except Exception as exc:  # said, and the job still fails with the monitor's error
        print(f"could not restore Serve application {cfg.serve.app_name!r}: {exc}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = config_sources.parser("python -m jobs.pipeline", __doc__.split("\n\n")[0]).parse_args(argv)
    setup_logging()
    run_or_exit(lambda: pipeline(config_sources.from_args(args)))
    return 0


if __name__ == "__main__":
    exit_when_done(main)
