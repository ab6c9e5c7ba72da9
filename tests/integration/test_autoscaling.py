"""The local cluster autoscales: a job that needs more CPUs than exist adds worker nodes, which go away when idle.

The job (``scale_out_job``) holds 5 actors x 2 CPUs at once, more than the test head's 8; training on
autoscaled nodes is what ``make demo`` does (its head has 0 CPUs), here the subject is the
autoscaler itself, so the job is kept to what forces it. The nodes added must neither repeat the job's
log lines nor unpack its working_dir again under its driver (cluster/fake_nodes.py).
"""

from __future__ import annotations

import re
import threading
import time
import uuid

import ray
from ray.job_submission import JobStatus

from foundry import config
from foundry.runtime.jobs import metadata, submit
from tests.conftest import TEST_HEAD_CPUS


def _worker_nodes() -> int:
    return sum(1 for n in ray.nodes() if n["Alive"] and "node:__internal_head__" not in n["Resources"])


def test_a_job_beyond_capacity_adds_nodes_then_idle_removes_them(ray_cluster, job_client):
    scaling = config.load(ray_cluster.overrides).cluster.autoscaling
    assert scaling.enabled
    idle_s = scaling.idle_timeout_minutes * 60
    baseline = _worker_nodes()
    # 5 actors x 2 CPUs = 10 CPUs at once > the head's 8: only new nodes can place them all.
    actors, cpus = 5, 2
    assert actors * cpus > TEST_HEAD_CPUS
    model = f"scale-{uuid.uuid4().hex[:6]}"
    submission_id = submit(job_client, "tests.integration.scale_out_job", [str(actors), str(cpus)],
                           metadata("scale-out", model)).submission_id

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
    logs = job_client.get_job_logs(submission_id)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    ran_on = re.search(r"ran on (\d+) node\(s\)", logs)
    assert ran_on and int(ran_on.group(1)) > 1, logs[-2000:]
    assert peak["nodes"] > baseline, f"no worker node was added (peak {peak['nodes']}, before {baseline})"
    # A line an actor printed reaches the job's logs once, whatever the number of nodes on this host (one log
    # monitor per host: cluster/fake_nodes.py); with one per node every line came once per live node.
    markers = re.findall(r"holder-marker (\d+)", logs)
    assert len(set(markers)) >= actors - 1, logs[-3000:]  # the forwarding works (one may still be in flight)
    assert len(markers) == len(set(markers)), f"repeated lines in the job's logs: {sorted(markers)}"
    # The nodes added for the job left its unpacked working_dir alone (each has a runtime-env folder of its
    # own: cluster/fake_nodes.py); sharing the head's, each unpacked it again under the running driver.
    assert "working dir kept: True" in logs, logs[-2000:]

    # Idle nodes are removed after idle_timeout_minutes (plus a few autoscaler rounds).
    deadline = time.time() + idle_s + 120
    while _worker_nodes() > baseline and time.time() < deadline:
        time.sleep(3)
    assert _worker_nodes() == baseline, f"{_worker_nodes()} worker nodes still alive {idle_s + 120:.0f} s later"
