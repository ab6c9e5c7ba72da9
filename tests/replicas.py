"""The replicas of a running Serve application, as Serve lists them and as they answer."""

from __future__ import annotations

from foundry.serving import control
from foundry.serving.deploy_config import DEPLOYMENT_NAME


def deployment(app: str) -> dict:
    return control.serve_details()["applications"][app]["deployments"][DEPLOYMENT_NAME]


def running(app: str) -> dict[str, int]:
    """replica id -> pid of the replicas Serve reports RUNNING."""
    return {r["replica_id"]: r["pid"] for r in deployment(app)["replicas"] if r["state"] == "RUNNING"}


def answers(app: str, tries: int = 200) -> dict[str, dict]:
    """GET /model's answer from every running replica; asserts that every one Serve lists answers.

    Over HTTP the proxy prefers replicas on its own node, so some replicas may never answer; a
    deployment handle spreads calls over all of them.
    """
    from ray import serve

    listed = set(running(app))
    handle = serve.get_app_handle(app)
    seen: dict[str, dict] = {}
    for _ in range(tries):
        info = handle.model_info.remote().result(timeout_s=60)
        seen[info["replica"]] = info
        if set(seen) >= listed:
            break
    assert set(seen) == listed, (sorted(seen), sorted(listed))
    return seen
