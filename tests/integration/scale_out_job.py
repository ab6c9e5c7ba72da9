"""A Ray job that needs more CPUs than the test head has: ``python -m tests.integration.scale_out_job N CPUS``.

Submitted by test_autoscaling through the Jobs API. It starts N actors of CPUS logical CPUs each
and waits until all of them answer: an actor holds its CPUs for its whole life (a task blocked in
``ray.get`` would lend them back), so the cluster can only place them all by adding worker nodes.
Each actor prints one marker line, which Ray's log monitor forwards to this driver (the job's logs);
the job then waits for them and prints how many nodes the actors landed on, and whether the folder it
runs in (its unpacked ``working_dir``) outlived the nodes added for it: a file the driver left there at
the start must still be there at the end (cluster/fake_nodes.py).
"""

import os
import sys
import time
from pathlib import Path

# Every marker line as it arrives: Ray's driver otherwise folds lines that differ only in numbers into one
# "[repeated Nx across cluster]" (read when Ray is imported).
os.environ["RAY_DEDUP_LOGS"] = "0"

import ray  # noqa: E402

LOG_WAIT_S = 4.0  # log monitors poll the log files; the markers reach the driver within a few seconds


@ray.remote
class Holder:
    def node(self, i: int) -> str:
        print(f"holder-marker {i}", flush=True)
        return ray.get_runtime_context().get_node_id()


def main(actors: int, cpus: float) -> None:
    from foundry.runtime.connection import connect

    left_here = Path.cwd() / f".driver-{os.getpid()}"  # in the job's unpacked working_dir
    left_here.touch()
    connect()
    holders = [Holder.options(num_cpus=cpus).remote() for _ in range(actors)]
    nodes = ray.get([h.node.remote(i) for i, h in enumerate(holders)], timeout=300)
    time.sleep(LOG_WAIT_S)
    print(f"{actors} actors of {cpus} CPUs ran on {len(set(nodes))} node(s)", flush=True)
    print(f"working dir kept: {left_here.exists()}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]))
