"""The Serve config (``serve deploy`` / REST / KubeRay ``serveConfigV2`` schema) built from Hydra.

``build_serve_config`` is a pure function of the typed config: the same dict is applied to a local
cluster by ``serve_apps.deploy``, written as YAML with ``--write``, and embedded in a RayService by
the cluster issue. The application is declared by import path and arguments rather than by a
pickled object, because that is what lets Serve tell a code change (new replicas) from a
``user_config`` change (``reconfigure()`` on the live replicas): the model version travels in
``user_config``, so a swap never restarts a replica.
"""

from __future__ import annotations

from typing import Any

from foundry.config import FoundryConfig
from foundry.drift import monitor_name
from foundry.serving.holder import user_config_for
from foundry.serving.replica_config import ReplicaConfig

DEPLOYMENT_NAME = "FoundryPredictor"
IMPORT_PATH = "serve_apps.app:build"


def replica_config(cfg: FoundryConfig) -> ReplicaConfig:
    """What the replicas are built from: the ``data`` and ``serve`` sections and the few other settings
    they read (``foundry.serving.replica_config``), so an edit to any other section leaves the
    application's ``args`` unchanged and Serve does not restart the replicas.

    Its ``to_container`` leaves ``serve.model_ref`` out: the model to serve travels in ``user_config``,
    so re-deploying with another ``serve.model_ref`` is an in-place swap rather than a restart.
    """
    m = cfg.drift.monitor
    return ReplicaConfig(
        model_name=cfg.model_name, storage_root=cfg.storage.root,
        monitor_name=monitor_name(m.name_prefix, cfg.model_name), monitor_namespace=m.namespace,
        sink=cfg.drift.sink if cfg.drift.enabled else None, data=cfg.data, serve=cfg.serve,
    )


def deployment_options(cfg: FoundryConfig, version: str | None) -> dict[str, Any]:
    s = cfg.serve
    a = s.autoscaling
    autoscaling = {"min_replicas": a.min_replicas, "max_replicas": a.max_replicas,
                   "target_ongoing_requests": a.target_ongoing_requests,
                   "upscale_delay_s": a.upscale_delay_s, "downscale_delay_s": a.downscale_delay_s}
    if a.initial_replicas is not None:
        autoscaling["initial_replicas"] = a.initial_replicas
    actor: dict[str, Any] = {"num_cpus": s.num_cpus}
    if s.use_gpu:
        actor["num_gpus"] = s.gpus_per_replica
    return {
        "name": DEPLOYMENT_NAME,
        "max_ongoing_requests": s.max_ongoing_requests,
        "autoscaling_config": autoscaling,
        "ray_actor_options": actor,
        "user_config": user_config_for(cfg.storage.layout.root, cfg.model_name, s.model_ref, version),
    }


def build_serve_config(cfg: FoundryConfig, version: str | None = None,
                       runtime_env: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole Serve config for this application.

    ``version``: the version id ``serve.model_ref`` resolved to (``serve_apps.deploy`` pins it, so
    every replica serves the same one); None leaves the resolution to each replica at load time.
    ``runtime_env``: extra environment for the application (the deploy CLI passes the API key this
    way; it is never part of a written file).
    """
    s = cfg.serve
    app: dict[str, Any] = {
        "name": s.app_name,
        "route_prefix": s.route_prefix,
        "import_path": IMPORT_PATH,
        "args": {"config": replica_config(cfg).to_container()},
        "logging_config": {"enable_access_log": s.access_log},
        "deployments": [deployment_options(cfg, version)],
    }
    if runtime_env:
        app["runtime_env"] = runtime_env
    http: dict[str, Any] = {"host": s.http.host, "port": s.http.port}
    if s.http.request_timeout_s is not None:
        http["request_timeout_s"] = s.http.request_timeout_s
    return {"proxy_location": s.proxy_location.value, "http_options": http, "applications": [app]}


def app_config(serve_config: dict[str, Any], app_name: str) -> dict[str, Any]:
    for app in serve_config.get("applications", []):
        if app.get("name") == app_name:
            return app
    raise KeyError(f"no application {app_name!r} in the Serve config")


def with_user_config(app: dict[str, Any], user_config: dict[str, Any]) -> dict[str, Any]:
    """A copy of one application's config with only the predictor's ``user_config`` replaced: the
    one kind of change that Serve applies by ``reconfigure()`` on the running replicas."""
    deployments = []
    for d in app.get("deployments", []):
        d = dict(d)
        if d.get("name") == DEPLOYMENT_NAME:
            d["user_config"] = dict(user_config)
        deployments.append(d)
    return {**app, "deployments": deployments}
