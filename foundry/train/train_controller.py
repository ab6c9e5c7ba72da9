"""Ray Train's controller and workers started without a runtime environment of their own.

Ray Train 2.60 starts its controller actor with ``runtime_env={"env_vars": ...}`` (at least
``RAY_WARN_BLOCKING_GET_INSIDE_ASYNC``, plus every ``RAY_TRAIN_*`` variable set in the driver) and each
training worker with the same variables. A process whose runtime environment sets anything is not
started directly: the raylet runs Ray's ``setup_worker.py`` first (a Python interpreter that imports
Ray to read the runtime environment context), which then execs the real worker through bash. That is
~0.3 s more per process on 2 cores (measured: an actor answers its first call 0.57-0.70 s after
creation with no ``env_vars``, 0.86-1.15 s with one), and both the controller and the workers are on
the critical path of every ``fit()``.

So the variables the controller reads in its own process travel another way
(``CONTROLLER_ENV_VARS``: the poll interval, the preemption-watcher switch, the worker-group time-outs,
its structured logging, and ``RAY_WARN_BLOCKING_GET_INSIDE_ASYNC``, which Ray sets for it and reads at
each ``ray.get`` of an async actor): the controller gets them as a constructor argument and puts them
into its own environment before Ray's ``TrainController.__init__`` reads them. Every other variable
(those that configure the workers or Ray Train's state actor) still goes through a runtime environment
as Ray sends it, so a user who sets one pays the set-up as before. A worker gets the same variables as
with Ray less the controller's; with none left it has no runtime environment of its own and inherits
the job's, as any actor does.

The controller also polls again ``REPOLL_AFTER_REPORT_S`` after a poll that took a report, instead of a
whole interval later (``_poll_workers``). A worker's report waits in a queue of one until a poll takes it, and the
poll that takes the last report still sees the worker running; so every run ended one interval
(``trainer.controller_poll_s``) after its last report, and a worker's second report within an interval
waited for the next (measured: 0.24-0.26 s from a loop's last report to the end of the run, 0.03-0.05 s
without a report). The extra polls come only as fast as the workers report; the short wait lets a loop
that returns right after its last report finish before the poll that should see it done.

What the driver runs is ``DataParallelTrainer._initialize_and_run_controller`` with the controller's
variables moved into the constructor (foundry/train/torch_trainer.py). Inside a Jobs-API job with a
``working_dir`` every process still goes through ``setup_worker.py`` (the job's runtime environment),
but in the job's own environment, already set up, instead of a new one merged with Ray Train's
variables: the retrain's training stage in benchmarks/results/heal_concept.json went 9.4 -> 6.7 s.
Without any runtime environment (a notebook, a script, the benchmarks) the controller and the workers
also take worker processes that Ray had started idle. This module imports no torch: the controller
imports it. tests/unit/test_train_controller.py fails when a Ray upgrade changes the code this re-states.
"""

from __future__ import annotations

import os

from ray.train.v2._internal.constants import (
    ENABLE_CONTROLLER_STRUCTURED_LOGGING_ENV_VAR,
    ENABLE_PREEMPTION_WATCHER_ENV_VAR,
    HEALTH_CHECK_INTERVAL_S_ENV_VAR,
    RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_ENV_VAR,
    WORKER_GROUP_START_TIMEOUT_S_ENV_VAR,
    WORKER_HEALTH_CHECK_TIMEOUT_S_ENV_VAR,
)
from ray.train.v2._internal.execution.controller.controller import TrainController, time_monotonic
from ray.train.v2._internal.execution.worker_group.worker_group import WorkerGroup

REPOLL_AFTER_REPORT_S = 0.05

# Read only in the controller's own process (Ray Train 2.60: TrainController.__init__ and the
# WorkerGroup it builds there); RAY_WARN_BLOCKING_GET_INSIDE_ASYNC matters only in an async actor,
# which a training worker is not.
CONTROLLER_ENV_VARS = frozenset({
    HEALTH_CHECK_INTERVAL_S_ENV_VAR,
    WORKER_HEALTH_CHECK_TIMEOUT_S_ENV_VAR,
    WORKER_GROUP_START_TIMEOUT_S_ENV_VAR,
    ENABLE_PREEMPTION_WATCHER_ENV_VAR,
    ENABLE_CONTROLLER_STRUCTURED_LOGGING_ENV_VAR,
    RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_ENV_VAR,
})


def split_controller_env(env_vars: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(what the controller reads itself, what must still reach the processes it starts)."""
    own = {k: v for k, v in env_vars.items() if k in CONTROLLER_ENV_VARS}
    return own, {k: v for k, v in env_vars.items() if k not in CONTROLLER_ENV_VARS}


def worker_runtime_env(ray_runtime_env: dict) -> dict:
    """Ray's worker runtime environment less the controller's variables; no ``env_vars`` key when
    none is left."""
    runtime_env = dict(ray_runtime_env)
    _, env_vars = split_controller_env(runtime_env.pop("env_vars", {}))
    if env_vars:
        runtime_env["env_vars"] = env_vars
    return runtime_env


class PlainEnvWorkerGroup(WorkerGroup):
    """Ray's worker group; its workers get only the variables a worker reads."""

    @staticmethod
    def _get_worker_runtime_env(custom_runtime_env):
        return worker_runtime_env(WorkerGroup._get_worker_runtime_env(custom_runtime_env))


class PlainEnvTrainController(TrainController):
    """Ray's controller, handed Ray Train's variables as an argument instead of a runtime environment."""

    worker_group_cls = PlainEnvWorkerGroup

    def __init__(self, controller_env: dict[str, str], **kwargs):
        os.environ.update(controller_env)
        super().__init__(**kwargs)

    async def _poll_workers(self):
        status = await super()._poll_workers()
        if any(s.training_report is not None for s in status.worker_statuses.values()):
            # The next report, or the run's end, may be waiting: Ray waits out the interval from this time.
            self._latest_poll_time = time_monotonic() - self._health_check_interval_s + REPOLL_AFTER_REPORT_S
        return status
