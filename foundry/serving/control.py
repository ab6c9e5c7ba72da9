"""The serving control plane: deploy the application, point it at another version, remove it.

Used by ``python -m serve_apps.deploy`` and, later, by the self-healing loop. The caller connects
first (``foundry.runtime.connection.connect``, token auth on); everything here talks to the Serve
controller through that connection, so it works the same locally, inside a Ray job and remotely.

Swaps (``set_model_version``):
1. resolve the ref (alias, ``latest`` or id) to one version id in the registry, so every replica,
   including ones the autoscaler starts later, serves exactly that version;
2. optionally load it here first (``preflight``): a version that cannot load is refused before any
   replica is touched;
3. re-apply the deployed application config with only ``user_config`` changed; Serve then calls
   ``reconfigure()`` on the live replicas (no restart), each of which loads the new version fully
   before switching and keeps the old one if the load fails (the error shows in GET /model);
4. wait until the application is RUNNING again.

Other applications on the cluster are left alone: the config applied is the cluster's current
declarative config with only this application replaced.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from foundry.config import DataConfig, FoundryConfig
from foundry.errors import FoundryError
from foundry.serving.deploy_config import DEPLOYMENT_NAME, app_config, build_serve_config, with_user_config
from foundry.serving.holder import ModelSpec, load_version, user_config_for
from foundry.storage.layout import StorageLayout

DEFAULT_TIMEOUT_S = 180.0
_POLL_S = 0.2


class ServeControlError(FoundryError):
    """Deploying or updating the Serve application failed; the message says where."""

    exit_code = 5


@dataclass(frozen=True)
class Deployed:
    app_name: str
    version: str | None
    url: str


def resolve_version(storage_root: str, model: str, ref: str) -> str:
    """The version id ``ref`` names now (raises RegistryError naming the known versions/aliases)."""
    return StorageLayout(storage_root).open_registry().get(model, ref).version


def preflight(storage_root: str, model: str, version: str, data: DataConfig) -> None:
    """Load the version here, exactly as a replica would, so a broken one never reaches Serve."""
    load_version(ModelSpec(storage_root=storage_root, model=model, ref=version, version=version), data)


def with_version_schema(cfg: FoundryConfig, version: str) -> FoundryConfig:
    """``cfg`` with the data schema the version was trained on: replicas validate requests against the
    model's own columns, whatever config folder (or none) this deploy was composed from."""
    import dataclasses
    import logging

    from foundry.config.sources import version_config

    stored = version_config(cfg.storage.root, cfg.model_name, version)
    if stored is None or stored.data == cfg.data:
        return cfg
    logging.getLogger(__name__).info("serving %s %s with the data schema stored with it (data.name=%s)",
                                     cfg.model_name, version, stored.data.name)
    return dataclasses.replace(cfg, data=stored.data)


def _client():
    from ray.serve.context import _get_global_client

    return _get_global_client()


def _start_serve(serve_config: dict[str, Any]) -> None:
    """Start the controller and proxies with the config's HTTP options (a no-op when Serve runs;
    HTTP options are cluster-wide and fixed from the first start)."""
    from ray import serve

    serve.start(proxy_location=serve_config["proxy_location"], http_options=serve_config["http_options"])


def serve_details() -> dict[str, Any]:
    return _client().get_serve_details()


def deployed_apps(details: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """name -> submitted config of every application deployed through a config (REST/CLI/here)."""
    details = details if details is not None else serve_details()
    out = {}
    for name, app in (details.get("applications") or {}).items():
        submitted = app.get("deployed_app_config")
        if submitted:
            out[name] = submitted
    return out


def _apply(serve_config: dict[str, Any], app: dict[str, Any]) -> float:
    """Apply ``app`` (replacing the one of the same name) next to the other deployed applications."""
    from ray.serve.schema import ServeDeploySchema

    others = [cfg for name, cfg in deployed_apps().items() if name != app["name"]]
    merged = {**{k: v for k, v in serve_config.items() if k != "applications"}, "applications": [*others, app]}
    schema = ServeDeploySchema.model_validate(merged)
    started = time.time()
    _client().deploy_apps(schema)
    return started


def wait_running(app_name: str, since: float, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """Until the app is RUNNING with every replica of the predictor running; raise on DEPLOY_FAILED."""
    deadline = time.monotonic() + timeout_s
    last = "not deployed yet"
    while time.monotonic() < deadline:
        app = (serve_details().get("applications") or {}).get(app_name)
        if app is not None:
            status = app.get("status")
            last = f"{status}: {app.get('message') or ''}".strip()
            if status == "DEPLOY_FAILED":
                raise ServeControlError(f"Serve application {app_name!r} failed to deploy: {app.get('message')}")
            dep = (app.get("deployments") or {}).get(DEPLOYMENT_NAME, {})
            replicas = dep.get("replicas") or []
            settled = replicas and all(r.get("state") == "RUNNING" for r in replicas)
            if status == "RUNNING" and app.get("last_deployed_time_s", 0) >= since - 1 and settled:
                return app
        time.sleep(_POLL_S)
    raise ServeControlError(f"Serve application {app_name!r} was not RUNNING after {timeout_s:.0f} s (last: {last})")


def url_of(http_options: dict[str, Any], route_prefix: str) -> str:
    """Where clients reach the application (a wildcard bind address is reached on loopback here)."""
    host = http_options.get("host") or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{host}:{http_options.get('port')}{route_prefix.rstrip('/')}"


def deploy(cfg: FoundryConfig, runtime_env: dict[str, Any] | None = None, pin: bool = True,
           check: bool = True, timeout_s: float = DEFAULT_TIMEOUT_S) -> Deployed:
    """Deploy (or update) the application from the config; returns once it is RUNNING.

    ``pin``: resolve ``serve.model_ref`` to a version id here (recommended; see the module doc).
    ``check``: load that version here first, so a broken one fails the deploy with its real error.
    """
    version = None
    if pin:
        version = resolve_version(cfg.storage.root, cfg.model_name, cfg.serve.model_ref)
        cfg = with_version_schema(cfg, version)
        if check:
            preflight(cfg.storage.root, cfg.model_name, version, cfg.data)
    serve_config = build_serve_config(cfg, version=version, runtime_env=runtime_env)
    _start_serve(serve_config)
    started = _apply(serve_config, app_config(serve_config, cfg.serve.app_name))
    wait_running(cfg.serve.app_name, started, timeout_s)
    # HTTP options are fixed when Serve first starts on a cluster: report the ones in force.
    http = serve_details().get("http_options") or serve_config["http_options"]
    return Deployed(cfg.serve.app_name, version, url_of(http, cfg.serve.route_prefix))


def current_user_config(app_name: str) -> dict[str, Any]:
    app = deployed_apps().get(app_name)
    if app is None:
        raise ServeControlError(f"no Serve application {app_name!r} deployed from a config on this cluster "
                                "(deploy it first: python -m serve_apps.deploy)")
    for d in app.get("deployments", []):
        if d.get("name") == DEPLOYMENT_NAME and d.get("user_config"):
            return dict(d["user_config"])
    raise ServeControlError(f"application {app_name!r} has no {DEPLOYMENT_NAME} user_config")


def apply_user_config(app_name: str, user_config: dict[str, Any], timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Low level: re-apply the deployed application with this ``user_config`` (no checks at all)."""
    app = deployed_apps().get(app_name)
    if app is None:
        raise ServeControlError(f"no Serve application {app_name!r} deployed from a config on this cluster")
    details = serve_details()
    serve_config = {"proxy_location": details.get("proxy_location") or "HeadOnly",
                    "http_options": details.get("http_options") or {}}
    started = _apply(serve_config, with_user_config(app, user_config))
    wait_running(app_name, started, timeout_s)


def set_model_version(app_name: str, ref: str, data: DataConfig | None = None, preflight_load: bool = True,
                      timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """Point the running application at ``ref`` in place (no replica restart); returns the version id.

    The model and storage root are the deployed application's own. ``data`` (the schema the version is
    loaded with) is needed only for the preflight load; without it the preflight is skipped.
    """
    current = ModelSpec.from_user_config(current_user_config(app_name))
    version = resolve_version(current.storage_root, current.model, ref)
    if preflight_load and data is not None:
        preflight(current.storage_root, current.model, version, data)
    apply_user_config(app_name, user_config_for(current.storage_root, current.model, ref, version), timeout_s)
    return version


def set_rollout(app_name: str, version: str, challenger: str | None = None, mode: str | None = None,
                fraction: float = 0.0, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Point the running application at ``version`` with (or, ``challenger=None``, without) a roll-out's
    challenger, in place: replicas keep both versions loaded, reuse whatever they already hold (a
    promotion swaps two loaded versions' roles) and route by ``foundry.rollout.routing``."""
    current = ModelSpec.from_user_config(current_user_config(app_name))
    apply_user_config(app_name, user_config_for(current.storage_root, current.model, version, version, challenger,
                                                mode, fraction), timeout_s)


def delete_app(app_name: str, wait: bool = True) -> None:
    """Remove the application; nothing to do when Serve is not running at all (idempotent).

    ``wait=False`` returns once Serve has the request (its replicas drain in the background)."""
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        _client()
    except RayServeException:
        return
    serve.delete(app_name, _blocking=wait)
