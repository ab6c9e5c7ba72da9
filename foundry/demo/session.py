"""The demo's session: its API key, the pipeline job's key environment, a fresh start, and what it prints.

Library parts of ``make demo`` (``python -m cluster.demo``); the orchestration that starts the local cluster lives in
``cluster/demo.py`` because the library never imports the ``cluster`` package.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from foundry import config, storage

DEMO_EXPERIMENT = "+experiment=demo"
KEY_FILE = "api_key"


def worth_showing(line: str) -> bool:
    """Our own progress lines and errors; Ray's per-operator progress chatter stays in the dashboard."""
    noisy = ("logging_progress.py", "streaming_executor.py", "INFO worker.py", "pid=", "DeprecationWarning",
             "warnings.warn", "INFO __init__.py", "(autoscaler", "INFO ", "Running 0:", "- ListFiles",
             "- ReadParquet", "- Map", "- split", "- limit")
    return bool(line.strip()) and not any(n in line for n in noisy)


def say(text: str) -> None:
    print(text, flush=True)


def key_env(serve: config.ServeConfig, key: str) -> dict | None:
    """The pipeline job's environment: the key's salted digest only (Ray logs a job's runtime_env in full).
    The running application's digest is reused when it is this key's, so a rerun swaps in place instead of
    restarting the replicas for a new salt."""
    from ray.serve.exceptions import RayServeException

    from foundry.serving import control
    from foundry.serving.keys import check_key_strength, digest_list

    auth = serve.auth
    if not (auth.enabled and auth.api_key_sha256_env):
        return None
    check_key_strength(key, f"the demo's API key (${auth.api_key_env} or {KEY_FILE} in demo.report_dir)")
    try:
        running = control.deployed_apps().get(serve.app_name) or {}
    except RayServeException:  # Serve not started yet
        running = {}
    previous = ((running.get("runtime_env") or {}).get("env_vars") or {}).get(auth.api_key_sha256_env)
    return {auth.api_key_sha256_env: digest_list([key], previous)}


def api_key(cfg: config.FoundryConfig) -> str:
    """$FOUNDRY_API_KEY when set, else the demo's own key (kept 0600 next to its reports, reused)."""
    env = cfg.serve.auth.api_key_env
    if env and os.environ.get(env):
        return os.environ[env]
    path = Path(cfg.demo.report_dir) / KEY_FILE
    if path.exists():
        if path.stat().st_mode & 0o077:  # copied or restored with looser permissions: tighten them
            path.chmod(0o600)
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)  # 43 characters, 256 bits (foundry.serving.keys wants >= 32 and 128)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def fresh_start(cfg: config.FoundryConfig) -> None:
    """Forget the demo model: its monitor actor, monitoring state, registry versions (nothing else)."""
    import ray

    from foundry.drift import monitor_name

    with contextlib.suppress(ValueError):  # ValueError: not running
        ray.kill(ray.get_actor(monitor_name(cfg.drift.monitor.name_prefix, cfg.model_name),
                               namespace=cfg.drift.monitor.namespace), no_restart=True)
    layout = cfg.storage.layout
    for base in (layout.registry, layout.monitoring):
        fs, path = storage.resolve(storage.join(base, cfg.model_name))
        fs.delete_dir_contents(path, missing_dir_ok=True)
