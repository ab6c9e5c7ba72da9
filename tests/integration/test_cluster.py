"""The local cluster as users get it from ``python -m cluster up``: resources, token auth, Jobs API, CLI."""

from __future__ import annotations

import stat
import time
import urllib.error
import urllib.request

import pytest
from ray.job_submission import JobStatus

from foundry.runtime import connection

TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}


def _http_status(url: str, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_cluster_has_cpu_resources(ray_cluster):
    import ray

    assert ray.is_initialized()
    ctx = connection.connect(ray_cluster.address)  # already connected: returns the same session
    assert ctx.gcs_address.endswith(f":{ray_cluster.config.gcs_port}")
    resources = ray.cluster_resources()
    assert resources.get("CPU", 0) >= 1, resources
    assert any(n["Alive"] for n in ray.nodes())


@pytest.mark.parametrize("path", ["/api/jobs/", "/api/v0/actors", "/api/v0/nodes", "/api/serve/applications/"])
def test_dashboard_rest_requires_the_token(ray_cluster, path):
    """Jobs, actors, nodes and Serve applications: the pages an operator reads, all behind the token."""
    url = f"{ray_cluster.dashboard_url}{path}"
    assert _http_status(url) in (401, 403)
    assert _http_status(url, {"Authorization": "Bearer not-the-token"}) in (401, 403)
    assert _http_status(url, connection.auth_headers(ray_cluster.config)) == 200


def test_trivial_job_succeeds(job_client):
    job_id = job_client.submit_job(
        entrypoint='python -c "import ray; ray.init(); print(ray.cluster_resources())"',
    )
    deadline = time.monotonic() + 120
    status = job_client.get_job_status(job_id)
    while status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(1)
        status = job_client.get_job_status(job_id)
    logs = job_client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, f"job {job_id} ended {status}; logs:\n{logs}"
    assert "CPU" in logs


def test_token_file_is_private(ray_cluster):
    path = connection.token_path(ray_cluster.config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_status_cli_reports_the_dashboard(ray_cluster):
    proc = ray_cluster.cli("status")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ray_cluster.dashboard_url in proc.stdout
    assert "CPU" in proc.stdout


def test_up_is_idempotent(ray_cluster):
    proc = ray_cluster.cli("up")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "already up" in proc.stdout
