"""The local cluster autoscales: a job that needs more CPUs than exist adds worker nodes, which go away when idle."""

from __future__ import annotations

import threading
import time
import uuid

import ray
from ray.job_submission import JobStatus

from foundry import config
from foundry.job_submission import metadata, submit
from tests.conftest import TEST_HEAD_CPUS


def _worker_nodes() -> int:
    return sum(1 for n in ray.nodes() if n["Alive"] and "node:__internal_head__" not in n["Resources"])


def test_training_beyond_capacity_adds_nodes_then_idle_removes_them(ray_cluster, job_client):
    scaling = config.load(ray_cluster.overrides).cluster.autoscaling
    assert scaling.enabled
    idle_s = scaling.idle_timeout_minutes * 60
    baseline = _worker_nodes()
    # 5 workers x 2 CPUs = 10 CPUs > the head's 8: only new nodes can place this placement group.
    needed = 5 * 2
    assert needed > TEST_HEAD_CPUS
    model = f"scale-{uuid.uuid4().hex[:6]}"
    overrides = [*ray_cluster.overrides, f"model_name={model}", "+experiment=quick",
                 "data.source.synthetic.rows=6000", "trainer.epochs=2", "trainer.num_workers=5",
                 "trainer.cpus_per_worker=2"]
    submission_id = submit(job_client, "jobs.train", overrides, metadata("train", model)).submission_id

    peak = {"nodes": baseline}
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak["nodes"] = max(peak["nodes"], _worker_nodes())
            time.sleep(1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    deadline = time.time() + 600
    status = job_client.get_job_status(submission_id)
    while not status.is_terminal() and time.time() < deadline:
        time.sleep(2)
        status = job_client.get_job_status(submission_id)
    done.set()
    watcher.join()
    assert status == JobStatus.SUCCEEDED, job_client.get_job_logs(submission_id)[-3000:]
    assert peak["nodes"] > baseline, f"no worker node was added (peak {peak['nodes']}, before {baseline})"

    # Idle nodes are removed after idle_timeout_minutes (plus a few autoscaler rounds).
    deadline = time.time() + idle_s + 120
    while _worker_nodes() > baseline and time.time() < deadline:
        time.sleep(3)
    assert _worker_nodes() == baseline, f"{_worker_nodes()} worker nodes still alive {idle_s + 120:.0f} s later"
