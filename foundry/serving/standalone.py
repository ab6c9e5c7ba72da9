"""The same HTTP app in one plain uvicorn process, without Ray: ``python -m foundry.serving.standalone``.

It exists as the baseline of ``benchmarks/serve_bench.py`` (same app, validation, auth and
``Predictor``; no batching, no proxy, no replicas) and for trying a model version locally. It
is not the production path: no autoscaling, no in-place swaps, one process.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from fastapi import FastAPI

from foundry.config import FoundryConfig
from foundry.config import sources as config_sources
from foundry.errors import FoundryError
from foundry.serving.app import build_app
from foundry.serving.auth import replica_checker
from foundry.serving.holder import ModelSpec
from foundry.serving.service import PredictionService, configure_torch


def create_app(cfg: FoundryConfig) -> FastAPI:
    """Load ``serve.model_ref`` of ``model_name`` and build the app around it (raises if it cannot load)."""
    configure_torch(cfg.serve.torch_threads)
    auth = replica_checker(cfg.serve.auth, logging.getLogger(__name__))
    service = PredictionService(cfg.data, cfg.serve)
    service.swap(ModelSpec(storage_root=cfg.storage.root, model=cfg.model_name, ref=cfg.serve.model_ref))
    return build_app(service.models, service, auth, cfg.serve.limits.max_body_bytes,
                     title=f"Foundry: {cfg.model_name} (standalone)")


ARGV_ENV = "FOUNDRY_STANDALONE_ARGV"  # the config arguments, for each worker process of --workers N


def _parser():
    p = config_sources.parser("python -m foundry.serving.standalone",
                              "Serve a registry version with plain uvicorn (no Ray).")
    p.add_argument("--host", help="default: serve.http.host")
    p.add_argument("--port", type=int, help="default: serve.http.port")
    p.add_argument("--workers", type=int, default=1,
                   help="uvicorn worker processes sharing the port (default 1), as `uvicorn --workers N` runs them")
    return p


def app_from_env() -> FastAPI:
    """uvicorn's factory for ``--workers N``: each worker process builds the app from the same arguments."""
    args = _parser().parse_args(json.loads(os.environ[ARGV_ENV]))
    return create_app(config_sources.load(config_sources.from_args(args)))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    try:
        cfg = config_sources.load(config_sources.from_args(args))
        app = create_app(cfg)  # also when --workers > 1: a version that cannot load fails here, once
    except FoundryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    import uvicorn

    where = {"host": args.host or cfg.serve.http.host, "port": args.port or cfg.serve.http.port,
             "log_level": "warning", "access_log": cfg.serve.access_log}
    if args.workers == 1:
        uvicorn.run(app, **where)
    else:
        os.environ[ARGV_ENV] = json.dumps(argv)
        uvicorn.run("foundry.serving.standalone:app_from_env", factory=True, workers=args.workers, **where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
