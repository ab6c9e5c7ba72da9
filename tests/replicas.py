"""The replicas of a running Serve application, as Serve lists them and as they answer."""

from __future__ import annotations

from foundry.serving import control
from foundry.serving.deploy_config import DEPLOYMENT_NAME


def deployment(app: str) -> dict:
    return control.serve_details()["applications"][app]["deployments"][DEPLOYMENT_NAME]


def running(app: str) -> dict[str, int]:
    """replica id -> pid of the replicas Serve reports RUNNING."""
    return {r["replica_id"]: r["pid"] for r in deployment(app)["replicas"] if r["state"] == "RUNNING"}


def answers(app: str, tries: int = 200, wait_s: float = 30.0) -> dict[str, dict]:
    """GET /model's answer from every running replica; asserts that every one Serve lists answers.

    Over HTTP the proxy prefers replicas on its own node, so some replicas may never answer; a
    deployment handle spreads calls over all of them. A handle's router hears of a replica that just
    became RUNNING a moment after the controller lists it, so calls go on (paced) for up to ``wait_s``.
    """
    import time

    from ray import serve

    listed = set(running(app))
    handle = serve.get_app_handle(app)
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + wait_s
    calls = 0
    while calls < tries or time.monotonic() < deadline:
        info = handle.model_info.remote().result(timeout_s=60)
        calls += 1
        seen[info["replica"]] = info
        if set(seen) >= listed:
            break
        if calls >= tries:
            time.sleep(0.2)
    assert set(seen) == listed, (sorted(seen), sorted(listed))
    return seen
