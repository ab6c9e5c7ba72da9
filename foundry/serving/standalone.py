"""The same HTTP app in one plain uvicorn process, without Ray: ``python -m foundry.serving.standalone``.

It exists as the baseline of ``benchmarks/serve_bench.py`` (same app, validation, auth and
``Predictor``; no batching, no proxy, no replicas) and for trying a model version locally. It
is not the production path: no autoscaling, no in-place swaps, one process.
"""

from __future__ import annotations

import logging
import sys

from fastapi import FastAPI

from foundry import config_sources
from foundry.config import FoundryConfig
from foundry.errors import FoundryError
from foundry.serving.app import build_app
from foundry.serving.auth import replica_checker
from foundry.serving.holder import ModelSpec
from foundry.serving.service import PredictionService, configure_torch


def create_app(cfg: FoundryConfig) -> FastAPI:
    """Load ``serve.model_ref`` of ``model_name`` and build the app around it (raises if it cannot load)."""
    configure_torch(cfg.serve.torch_threads)
    auth = replica_checker(cfg.serve.auth, logging.getLogger(__name__))
    service = PredictionService(cfg)
    service.swap(ModelSpec(storage_root=cfg.storage.root, model=cfg.model_name, ref=cfg.serve.model_ref))
    return build_app(service.models, service, auth, cfg.serve.limits.max_body_bytes,
                     title=f"Foundry: {cfg.model_name} (standalone)")


def main(argv: list[str] | None = None) -> int:
    p = config_sources.parser("python -m foundry.serving.standalone",
                              "Serve a registry version with a single uvicorn process (no Ray).")
    p.add_argument("--host", help="default: serve.http.host")
    p.add_argument("--port", type=int, help="default: serve.http.port")
    args = p.parse_args(argv)
    try:
        cfg = config_sources.load(config_sources.from_args(args))
        app = create_app(cfg)
    except FoundryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    import uvicorn

    uvicorn.run(app, host=args.host or cfg.serve.http.host, port=args.port or cfg.serve.http.port,
                log_level="warning", access_log=cfg.serve.access_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
