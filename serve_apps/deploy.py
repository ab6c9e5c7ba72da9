"""Deploy the serving application: ``python -m serve_apps.deploy [hydra overrides] [--write FILE]``.

- Deploy or update: builds the Serve config from Hydra (``build_serve_config``), connects with
  token auth and applies it, then waits until the application is RUNNING. Running it again with
  another ``serve.model_ref=<alias|version>`` changes only ``user_config``, so the live replicas
  swap the model in place (``reconfigure()``, no restart).
- ``--write FILE``: write the same config as YAML (for ``serve deploy FILE`` or KubeRay's
  ``serveConfigV2``) instead of deploying. The API key is never written into it.
- ``--delete``: remove the application (other applications stay).

The API keys: with ``serve.auth.api_key_file`` unset, the key(s) are read from ``$FOUNDRY_API_KEY``
(``serve.auth.api_key_env``) of *this* process (or their digests from ``$FOUNDRY_API_KEY_SHA256``) and
only salted digests are handed to the replicas in the application's ``runtime_env`` (Ray logs
runtime_envs); the same for a feedback key (``serve.auth.feedback_key_env``). A redeploy with the same
keys keeps the running application's digests, so it changes nothing but ``user_config``. Also runs
as a Ray job: ``ray job submit -- python -m serve_apps.deploy ...``.

Exit codes: 0 deployed, 2 bad configuration or key, 4 registry problem (unknown or broken
version), 5 Serve failed to deploy.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import yaml

from foundry.config import FoundryConfig, ServeConfig
from foundry.config import sources as config_sources
from foundry.console.entry import exit_when_done, run_or_exit
from foundry.serving.deploy_config import build_serve_config
from foundry.serving.keys import carried_digests

__all__ = ["api_key_runtime_env", "build_serve_config", "main"]


def _parser() -> argparse.ArgumentParser:
    p = config_sources.add_arguments(argparse.ArgumentParser(
        prog="python -m serve_apps.deploy",
        description="Deploy (or update in place) the Foundry Serve application from the Hydra config.",
        epilog="examples: python -m serve_apps.deploy serve.model_ref=production | "
               "python -m serve_apps.deploy --from-version loans@production | "
               "python -m serve_apps.deploy --write serve.yaml | python -m serve_apps.deploy --delete. "
               + config_sources.EPILOG,
    ))
    p.add_argument("--write", metavar="FILE", help="write the Serve config as YAML instead of deploying")
    p.add_argument("--no-pin", action="store_true",
                   help="do not resolve serve.model_ref to a version id now (each replica resolves it when it loads)")
    p.add_argument("--no-check", action="store_true", help="skip loading the version here before deploying")
    p.add_argument("--delete", action="store_true", help="delete the application instead")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for RUNNING (default 180)")
    return p


def api_key_runtime_env(serve: ServeConfig, deployed_env_vars: dict[str, str] | None = None) -> dict | None:
    """Pass the keys' salted digests (predict and, if configured, feedback) from this process's
    environment to the replicas (checked here, so a missing or weak key fails the deploy instead of
    every replica). A key file is read by the replicas themselves: it may exist only on the cluster's
    nodes (a mounted secret), so it is not looked for here. ``deployed_env_vars``: the running
    application's; digests there that stand for exactly the same keys are kept (a fresh salt would
    change the runtime_env and so restart every replica)."""
    env_vars = carried_digests(serve.auth, previous=deployed_env_vars)
    return {"env_vars": env_vars} if env_vars else None


def _deployed_env_vars(app_name: str) -> dict[str, str] | None:
    """The running application's runtime_env variables, or None (not deployed, or Serve not running)."""
    from ray.serve.exceptions import RayServeException

    from foundry.serving import control

    try:
        app = control.deployed_apps().get(app_name) or {}
    except RayServeException:
        return None
    return (app.get("runtime_env") or {}).get("env_vars") or None


def _address(cfg: FoundryConfig) -> str | None:
    from foundry.runtime import connection

    if cfg.ray.address:
        return cfg.ray.address
    if os.environ.get("RAY_ADDRESS"):
        return None  # inside `ray job submit`, or set by the user
    return connection.gcs_address(cfg.cluster)


def run(args: argparse.Namespace) -> int:
    cfg = config_sources.load(config_sources.from_args(args))
    if args.write:
        version = None
        if not args.no_pin:
            from foundry.serving.control import resolve_version

            version = resolve_version(cfg.storage.root, cfg.model_name, cfg.serve.model_ref)
        text = yaml.safe_dump(build_serve_config(cfg, version=version), sort_keys=False)
        Path(args.write).write_text(text)
        print(f"wrote {args.write} (serve deploy {args.write}); model {cfg.model_name} "
              f"{version or cfg.serve.model_ref}")
        return 0

    from foundry.runtime import connection
    from foundry.serving import control

    runtime_env = None if args.delete else api_key_runtime_env(cfg.serve)
    connection.connect(_address(cfg), logging_level="ERROR", log_to_driver=False)
    if args.delete:
        control.delete_app(cfg.serve.app_name)
        print(f"deleted Serve application {cfg.serve.app_name!r}")
        return 0
    deployed_env_vars = _deployed_env_vars(cfg.serve.app_name) if runtime_env else None
    if deployed_env_vars:
        runtime_env = api_key_runtime_env(cfg.serve, deployed_env_vars)
    deployed = control.deploy(cfg, runtime_env=runtime_env, pin=not args.no_pin, check=not args.no_check,
                              timeout_s=args.timeout)
    print(f"Serve application {deployed.app_name!r} is RUNNING at {deployed.url}: "
          f"{cfg.model_name} {deployed.version or cfg.serve.model_ref} (ref {cfg.serve.model_ref})")
    header = f" -H 'X-API-Key: ${cfg.serve.auth.api_key_env}'" if cfg.serve.auth.enabled and \
        cfg.serve.auth.api_key_env else ""
    print(f"  curl{header} {deployed.url}/model")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_or_exit(lambda: run(args))


if __name__ == "__main__":
    # Ends without the interpreter's teardown (foundry/console/entry.py): 1.9 s of every deploy went into
    # Ray's atexit hook and tearing down torch (the preflight loads the model) after the app was RUNNING.
    exit_when_done(main)
