"""Train and register one model version: ``python -m jobs.train [--config-dir DIR] [overrides]``.

Runs the same locally (it connects to the cluster of ``python -m cluster up``) and through
``ray job submit -- python -m jobs.train ...``. A retrain starts from the version it replaces:
``python -m jobs.train --from-version MODEL@VERSION data.source.path=...`` (the self-healing loop
does exactly that), so the cluster never needs the folder the first version was configured from.
Exit codes: 0 registered, 2 bad config, 3 bad data (nothing registered), 4 registry problem,
1 anything else.
"""

from __future__ import annotations

from foundry.config import sources as config_sources
from foundry.console.entry import exit_when_done, run_or_exit, setup_logging


def train(sources: config_sources.ConfigSources):
    from omegaconf import OmegaConf

    from foundry import config as foundry_config
    from foundry.runtime.connection import configure_data, connect
    from foundry.train.workflow import train_and_register

    raw = config_sources.compose(sources)
    cfg = foundry_config.to_typed(raw)  # every value checked before any Ray work
    connect(cfg.ray.address, driver_env=cfg.cluster.driver_env)
    configure_data(cfg.ray.data_progress_bars)
    outcome = train_and_register(cfg, OmegaConf.to_yaml(raw, resolve=True))
    print(f"registered {outcome.model} version {outcome.version}: "
          + ", ".join(f"{k}={v:.4f}" for k, v in outcome.metrics.items() if k != "rows"), flush=True)
    return outcome


def main(argv: list[str] | None = None, prog: str = "python -m jobs.train", doc: str = __doc__) -> int:
    args = config_sources.parser(prog, doc.split("\n\n")[0]).parse_args(argv)
    setup_logging()
    sources = config_sources.from_args(args)
    run_or_exit(lambda: train(sources))
    return 0


if __name__ == "__main__":
    exit_when_done(main)
