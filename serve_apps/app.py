"""The Ray Serve application: a FastAPI ingress deployment over the registry's served version.

Glue only: the HTTP app, validation, auth, model swaps and inference are ``foundry.serving``'s.
Serve builds it from the import path ``serve_apps.app:build`` with ``args={"config": <ReplicaConfig>}``
(``foundry.serving.replica_config``: the data and serve sections and the few settings a replica reads,
built by ``foundry.serving.deploy_config``, so an edit to another section restarts no replica), and
hands every replica the model to serve through ``user_config``, so a new version arrives by
``reconfigure()`` on live replicas.

Why ``@serve.ingress()`` without an app and ``__serve_build_asgi_app__``: the request models are
built from the data schema in the config the replica receives, so the FastAPI app cannot exist at
import time; Serve calls ``__serve_build_asgi_app__`` after ``__init__`` and serves what it
returns, /docs and /openapi.json included.

Why ``reconfigure`` is async and loads in a thread: with ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` user
code runs on the replica's event loop, so a blocking load would stall every in-flight request;
in a thread, requests keep being answered by the old model until the new one is published.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve

from foundry.serving.app import build_app
from foundry.serving.auth import replica_checker
from foundry.serving.deploy_config import DEPLOYMENT_NAME
from foundry.serving.holder import ModelSpec
from foundry.serving.metrics import RayServeMetrics
from foundry.serving.replica_config import ReplicaConfig
from foundry.serving.service import PredictionService, configure_torch

logger = logging.getLogger("ray.serve")


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress()
class FoundryPredictor:
    def __init__(self, config_data: dict[str, Any]):
        self.cfg = ReplicaConfig.from_container(config_data)
        s = self.cfg.serve
        configure_torch(s.torch_threads)
        self.auth = replica_checker(s.auth, logger)  # no key fails the replica, never opens it
        self.service = PredictionService(self.cfg.data, s, RayServeMetrics(), sink=_monitor_sink(self.cfg),
                                         label_ledger=_label_ledger(self.cfg))
        self.batching = s.batching.enabled
        self._predict_batched.set_max_batch_size(s.batching.max_batch_size)
        self._predict_batched.set_batch_wait_timeout_s(s.batching.batch_wait_timeout_s)

    def __serve_build_asgi_app__(self):
        return build_app(self.service.models, self, self.auth, self.cfg.serve.limits.max_body_bytes,
                         self.service.metrics, title=f"Foundry: {self.cfg.model_name}")

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        spec = ModelSpec.from_user_config(user_config)
        outcome = await asyncio.to_thread(self.service.swap, spec)
        if outcome.error:
            logger.error("model swap to %s failed; still serving %s: %s", spec.target, outcome.version,
                         outcome.error["error"])
        elif outcome.changed:
            logger.info("now serving %s %s (ref %s)", spec.model, outcome.version, spec.ref)

    def check_health(self) -> None:
        """Serve's health probe: a replica without a model must be replaced, not routed to. Also refreshes the
        served-version gauges (Ray drops a gauge not set again within two report intervals); a metrics fault
        never fails the probe."""
        self.service.holder.require()
        try:
            self.service.metrics.serving(self.service.holder.serving)
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not refresh the served versions' metrics: %s", exc)

    # ---- foundry.serving.app.Backend -------------------------------------------------------------
    async def predict(self, rows: list[dict[str, Any]], request_id: str | None = None) -> dict[str, Any]:
        if self.batching:
            return await self._predict_batched((rows, request_id))
        return self.service.run_batch([rows], [request_id])[0]

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)  # the sizes are set from config in __init__
    async def _predict_batched(self, requests: list[tuple[list[dict[str, Any]], str | None]]) -> list[dict[str, Any]]:
        return self.service.run_batch([rows for rows, _ in requests], [rid for _, rid in requests])

    async def feedback(self, labels: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.service.feedback(labels)

    async def model_info(self) -> dict[str, Any]:
        info = self.service.model_info()
        info["replica"] = serve.get_replica_context().replica_id.unique_id
        if info.get("rollout") is not None:
            info["rollout"]["evidence"] = await _rollout_evidence(self.cfg)
        return info

    def health(self) -> tuple[bool, dict[str, Any]]:
        return self.service.health()


def _monitor_sink(cfg: ReplicaConfig):
    """The non-blocking hand-off of live traffic to the model's drift monitor (None with drift off)."""
    if cfg.sink is None:
        return None
    from foundry.drift.metrics import sink_counter
    from foundry.drift.sink import MonitorSink

    return MonitorSink(cfg.sink, cfg.monitor_name, cfg.monitor_namespace, count=sink_counter(cfg.model_name)).start()


def _label_ledger(cfg: ReplicaConfig):
    """The model's label ledger (one detached async actor per model and storage root, shared by every
    replica and kept across deploys), or None with ``serve.feedback.provenance=false``."""
    if not cfg.serve.feedback.provenance:
        logger.warning("serve.feedback.provenance=false: /feedback takes labels for any request id, repeatedly")
        return None
    import ray

    from foundry.serving.ledger import LedgerActor, ledger_actor_name
    from foundry.serving.service import RemoteLedger

    f = cfg.serve.feedback
    handle = ray.remote(LedgerActor).options(
        name=ledger_actor_name(cfg.model_name, cfg.storage_root), namespace=cfg.monitor_namespace,
        lifetime="detached", get_if_exists=True, num_cpus=0, max_restarts=-1, max_task_retries=3,
        # Every replica calls it 5 times a second: with task events on, the GCS keeps a record of each
        # call, and a 30-minute soak saw gcs_server grow by 2.5 MiB a minute.
        enable_task_events=False,
    ).remote(cfg.storage_root, cfg.model_name, f.window_s, f.max_ids, f.on_repeat.value,
             f.grace_s)
    return RemoteLedger(handle)


async def _rollout_evidence(cfg: ReplicaConfig) -> dict[str, Any]:
    """The live evidence so far, from the model's monitor (which holds the labels); a short wait only."""
    import ray

    try:
        actor = ray.get_actor(cfg.monitor_name, namespace=cfg.monitor_namespace)
        return await asyncio.wait_for(actor.rollout_status.remote(), timeout=2.0)
    except Exception as exc:  # no monitor, or it is busy: /model still answers
        return {"unavailable": f"{type(exc).__name__}: {exc}"[:300]}


def build(args: dict[str, Any]):
    """The application builder Serve calls with the config's ``args``."""
    if "config" not in args:
        raise ValueError("serve_apps.app:build needs args={'config': <ReplicaConfig as a container>}; "
                         "use python -m serve_apps.deploy, which builds it from Hydra")
    return FoundryPredictor.bind(args["config"])
