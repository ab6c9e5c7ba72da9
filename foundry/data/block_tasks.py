"""Ray Datasets made from the outputs of plain Ray tasks, one block per task.

Where the pipeline runs one function over every block once and keeps the results (the staging pass
over a Parquet source, the encoding of the staged blocks: foundry/data/pipeline.py), a plain Ray task
per block does what a ``map_batches(...).materialize()`` would, without starting a Ray Data execution:
no streaming executor polling in the driver, no resource reservation with Ray Data's autoscaling
coordinator before the second task may start, no per-execution statistics actor calls. Each task
returns its block and the block's Ray Data metadata, computed where the block is (so nothing is read
back to compute it), and ``materialized`` wraps them in the ``MaterializedDataset`` that
``Dataset.materialize()`` would have returned: the trainer, ``iter_batches`` and ``to_arrow_refs`` see
no difference. It builds that from Ray Data internals (``FromArrow``, ``LogicalPlan``,
``DatasetStats``); tests/integration/test_data_pipeline.py checks it against the installed Ray (the
staged dataset is such a one, and prepares to the same result as Ray Data's streaming path).

Measured on the 2,000,000-row benchmark set (benchmarks/data_bench.py's data), 8 alternating prepares in
one session each: the staging pass by tasks instead of a Ray Data execution took a prepare from 1.92 to
1.61 s on 2 CPUs and from 2.84 to 2.69 s on 1 (medians; the driver's executor loop alone used 0.25-0.3 s
of CPU per prepare, on the same 2 cores as the tasks).
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 10.0


def metadata(table):
    """Ray Data's metadata (rows, bytes, schema) of one Arrow block; called inside the task that made it."""
    from ray.data._internal.util import get_table_block_metadata_schema

    return get_table_block_metadata_schema(table)


def materialized(refs: list, block_metadata: list, operator: str = "FromArrow"):
    """A ``MaterializedDataset`` of the Arrow blocks behind ``refs``, with their ``metadata``."""
    from ray.data import DataContext
    from ray.data._internal.logical.interfaces import LogicalPlan
    from ray.data._internal.logical.operators.from_operators import FromArrow
    from ray.data._internal.stats import DatasetStats
    from ray.data.dataset import MaterializedDataset

    context = DataContext.get_current().copy()
    return MaterializedDataset(LogicalPlan(FromArrow(refs, block_metadata), context), context,
                               DatasetStats(metadata={operator: block_metadata}, parent=None))


def gather(refs: list, what: str) -> list:
    """``ray.get(refs)``, saying every ``PROGRESS_EVERY_S`` how many blocks are done while it waits (a
    large source stages for minutes). A failed task's error is raised at the first such look at it, and
    the tasks still running are cancelled: their work would be thrown away."""
    import ray

    started, pending, done = time.monotonic(), list(refs), 0
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=PROGRESS_EVERY_S)
            ray.get(ready)
            done += len(ready)
            if pending:
                log.info("%s %d of %d blocks (%.0f s)", what, done, len(refs), time.monotonic() - started)
    except Exception:
        for ref in pending:
            try:
                ray.cancel(ref)
            except Exception:  # already finished, or its worker is gone: nothing left to stop
                log.debug("could not cancel the task of %s", ref, exc_info=True)
        raise
    return ray.get(refs)
