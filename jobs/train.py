"""Train and register one model version: ``python -m jobs.train [hydra overrides]``.

Runs the same locally (it connects to the cluster of ``python -m cluster up``) and through
``ray job submit -- python -m jobs.train ...``. Exit codes: 0 registered, 2 bad config,
3 bad data (nothing registered), 4 registry problem, 1 anything else.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from foundry import config as foundry_config
from foundry.cli import run_or_exit, setup_logging


def train(raw: DictConfig):
    from foundry.ray_runtime import connect
    from foundry.train.workflow import train_and_register

    cfg = foundry_config.to_typed(raw)  # every value checked before any Ray work
    connect(cfg.ray.address, driver_env=cfg.cluster.driver_env)
    outcome = train_and_register(cfg, OmegaConf.to_yaml(raw, resolve=True))
    print(f"registered {outcome.model} version {outcome.version}: "
          + ", ".join(f"{k}={v:.4f}" for k, v in outcome.metrics.items() if k != "rows"), flush=True)
    return outcome


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(raw: DictConfig) -> None:
    setup_logging()
    run_or_exit(lambda: train(raw))


if __name__ == "__main__":
    main()
