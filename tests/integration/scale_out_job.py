"""A Ray job that needs more CPUs than the test head has: ``python -m tests.integration.scale_out_job N CPUS``.

Submitted by test_autoscaling through the Jobs API. It starts N actors of CPUS logical CPUs each
and waits until all of them answer: an actor holds its CPUs for its whole life (a task blocked in
``ray.get`` would lend them back), so the cluster can only place them all by adding worker nodes.
Prints how many nodes they landed on.
"""

import sys

import ray


@ray.remote
class Holder:
    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()


def main(actors: int, cpus: float) -> None:
    from foundry.runtime.connection import connect

    connect()
    holders = [Holder.options(num_cpus=cpus).remote() for _ in range(actors)]
    nodes = ray.get([h.node.remote() for h in holders], timeout=300)
    print(f"{actors} actors of {cpus} CPUs ran on {len(set(nodes))} node(s)", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]))
