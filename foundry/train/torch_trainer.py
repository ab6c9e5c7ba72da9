"""Ray Train's ``TorchTrainer`` without the per-fit processes a Foundry fit does not use.

A ``fit()`` on Ray Train 2.60 starts up to six Python processes: the controller, the workers, a
synchronization actor, and three that this module leaves out where they do nothing for the run. Each
is a fresh process (a runtime environment set up, Ray and Ray Train imported: ~1 s of CPU on 2 cores)
that competes with the controller's and the workers' own start:

- ``PlacementGroupCleaner`` (detached; Ray reports ~600 MB each in production, ray-project/ray#65443)
  asks the state API every second whether the controller still lives, so that it can remove the run's
  placement group if the controller dies while the job that started it lives on (ray-project/ray#58515:
  a placement group is freed only once both its creating actor and its job are gone); ``fit()`` also
  returns only after its monitor thread, which sleeps up to 1 s, has stopped. A Tune sweep's job
  outlives a failed trial (a leaked group would hold the next trials' CPUs), so a trial always gets it
  (foundry/train/tuning.py); a single ``fit()`` is the whole retrain job: when it fails the job exits and
  Ray frees the group with it, so it goes without unless ``trainer.placement_group_cleaner`` is set.
- ``DatasetManager``: serves Ray Data shards of the datasets handed to the trainer. When every split
  travels to the workers as in-memory shards (foundry/train/shards.py) the trainer gets no dataset and
  the manager would serve nothing; it is started only when a split streams.
- ``PreemptionWatcher`` (``RAY_TRAIN_ENABLE_PREEMPTION_WATCHER``): polls for node drains so that
  Ray Train can warn the workers before a spot node goes; it is started by the controller and follows
  ``trainer.preemption_watcher`` (foundry/train/trainer.py sets the variable). Without it a preempted
  worker is still retried on Ray Train's preemption budget (the actor error says it was preempted).

The controller also runs without torch (foundry/train/torch_backend.py), and the controller and the
workers start without Ray's ``setup_worker.py`` step where the job has no runtime environment of its
own (foundry/train/train_controller.py). Measured on 2 cores, an empty training loop: ``fit()`` 6.0 s
with Ray's defaults, 4.8 s with the torch-free controller, 4.2 s with these processes left out too
(benchmarks/results/train.json has the real fits).
"""

from __future__ import annotations

import threading

import ray
from ray.train.torch import TorchTrainer
from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
from ray.train.v2._internal.constants import (
    DEFAULT_RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_VALUE,
    RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_ENV_VAR,
    get_env_vars_to_propagate,
)

from foundry.train.train_controller import PlainEnvTrainController, split_controller_env


class LeanTorchTrainer(TorchTrainer):
    """A ``TorchTrainer`` whose controller runs Ray's default callbacks less the cleaner, and less the
    dataset manager when no dataset is handed to it."""

    keep_placement_group_cleaner = False

    def _create_default_callbacks(self):
        left_out = () if self.keep_placement_group_cleaner else (PlacementGroupCleanerCallback,)
        if not self.datasets:
            left_out += (DatasetsCallback,)
        return [c for c in super()._create_default_callbacks() if not isinstance(c, left_out)]

    def _initialize_and_run_controller(self, **controller_init_kwargs):
        """Ray's own (``DataParallelTrainer._initialize_and_run_controller``, Ray 2.60), with the
        variables the controller reads itself passed to its constructor instead of set through a
        runtime environment (foundry/train/train_controller.py)."""
        env_vars = get_env_vars_to_propagate()
        env_vars.setdefault(RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_ENV_VAR, DEFAULT_RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_VALUE)
        controller_env, passed_on = split_controller_env(env_vars)
        controller_actor_cls = ray.remote(
            num_cpus=0,
            # Attach the controller to the node running the driver script, as Ray does.
            label_selector={ray._raylet.RAY_NODE_ID_KEY: ray.get_runtime_context().get_node_id()},
            runtime_env={"env_vars": passed_on} if passed_on else None,
        )(PlainEnvTrainController)
        controller = controller_actor_cls.remote(controller_env=controller_env, **controller_init_kwargs)
        if threading.current_thread() is threading.main_thread():
            self._register_sigint_handler(controller)
        ray.get(controller.run.remote())
        return ray.get(controller.get_result.remote())


class LeanTorchTrainerWithCleaner(LeanTorchTrainer):
    keep_placement_group_cleaner = True


def trainer_class(placement_group_cleaner: bool) -> type[TorchTrainer]:
    return LeanTorchTrainerWithCleaner if placement_group_cleaner else LeanTorchTrainer
