"""Let Ray Data's executor use the cluster's CPUs from the start of an execution, not a second in.

Ray Data 2.60 sizes every execution by the resources its autoscaling coordinator has reserved for it
(``RateBasedClusterAutoscaler`` and ``DefaultClusterAutoscalerV2`` alike). An execution registers
with the coordinator as it starts, and its resource manager asks for the reservation without
blocking: the first answer is empty, and the manager keeps that answer for
``GLOBAL_LIMITS_UPDATE_INTERVAL_S`` (1 s) before it asks again. For that first second the execution
has no budget and runs only the one task Ray Data's liveness rule allows: on the 2,000,000-row
benchmark set, 4 read tasks ran one after another on 2 CPUs (the staging pass took 1.5 s, about
what 1 CPU takes), though the reservation (both CPUs) had been answered within milliseconds.
Foundry's pipeline runs one short execution per pass, so that second is most of each pass.

Asking every ``LIMITS_REFRESH_S`` instead starts the second task with the first: the same data set
prepares in 1.3-1.5 s instead of 1.8-1.9 s on 2 CPUs (docs/benchmarks.md, "Ray Data preprocessing vs
one process"). The cost is one non-blocking call to the coordinator actor per interval while an
execution runs.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

LIMITS_REFRESH_S = 0.1


def use_reserved_cpus_promptly() -> None:
    """Refresh Ray Data's resource limits every ``LIMITS_REFRESH_S`` in this process (idempotent).

    Only lowers the interval, never raises it; a Ray whose resource manager has no such attribute is
    left as it is (and says so once at debug level)."""
    try:
        from ray.data._internal.execution.resource_manager import ResourceManager
    except ImportError:
        log.debug("Ray Data has no ResourceManager here; its limits refresh is left as it is")
        return
    current = getattr(ResourceManager, "GLOBAL_LIMITS_UPDATE_INTERVAL_S", None)
    if current is None:
        log.debug("Ray Data's ResourceManager has no GLOBAL_LIMITS_UPDATE_INTERVAL_S; left as it is")
        return
    ResourceManager.GLOBAL_LIMITS_UPDATE_INTERVAL_S = min(current, LIMITS_REFRESH_S)
