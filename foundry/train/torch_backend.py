"""Ray Train's torch process-group set-up, without importing torch in the controller.

Ray Train 2.60 hands the trainer's ``TorchConfig`` to its controller actor; unpickling it imports
``ray.train.torch.config``, whose first lines import torch: 1.2-1.3 s of a fresh process on 2 cores,
spent before the controller asks for the worker group, so every ``fit()`` starts its workers that much
later (measured: the controller process spends 1.24 s in ``import torch``, on the critical path of a
~6 s start-up). The controller never touches a tensor: it only tells the workers to set up the
process group. ``LazyTorchConfig`` carries ``TorchConfig``'s backend and time-out (the init method is
always ``env://``) and a backend that sends the workers small functions importing Ray's own torch helpers there, where torch is loaded
anyway. What runs on the workers is Ray's code (``_setup_torch_process_group``,
``_set_torch_distributed_env_vars``, ``_shutdown_torch``, ``TorchConfigContextManager``); what this
module re-states is the controller side of ``ray.train.torch.config._TorchBackend.on_start`` for the
``env://`` init method on CPU (gloo) and GPU (nccl) workers -- TPU is left to Ray's ``TorchConfig``.
tests/unit/test_torch_backend.py fails when a Ray upgrade renames what this calls.

A single worker without a GPU (every small retrain on CPU) has nothing to set up: no peer to join in a
process group (Foundry's loop all-reduces only when one is initialized, foundry/train/loop.py), no CUDA
device to select, no cache to empty. There the backend only sets torch's distributed variables (RANK,
WORLD_SIZE...) and the worker never imports ``ray.train.torch``: importing it costs a worker 0.3 s on 2
cores after torch is loaded (its trainer, checkpoint and data-loader modules), all of it on the path from
``fit()`` to the first epoch (A/B, 12 fits each: start-up 4.96 -> 4.78 s, medians, on a noisy VM).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import ray
from ray._private.ray_constants import env_integer
from ray.train.backend import Backend, BackendConfig
from ray.train.constants import (
    DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
    TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
)

logger = logging.getLogger(__name__)


def _ray_torch_config():
    """Ray's torch backend module, imported where it runs: on a training worker."""
    from ray.train.torch import config

    return config


def _set_master_address(addr: str, port: int) -> None:
    os.environ["MASTER_ADDR"] = addr
    os.environ["MASTER_PORT"] = str(port)


def _set_distributed_env_vars() -> None:
    _ray_torch_config()._set_torch_distributed_env_vars()


def _set_single_cpu_worker_env_vars() -> None:
    """Ray's ``_set_torch_distributed_env_vars`` for one worker on CPU, without importing torch."""
    import ray.train

    context = ray.train.get_context()
    os.environ.update({"LOCAL_RANK": str(context.get_local_rank()),
                       "LOCAL_WORLD_SIZE": str(context.get_local_world_size()),
                       "NODE_RANK": str(context.get_node_rank()), "RANK": str(context.get_world_rank()),
                       "WORLD_SIZE": str(context.get_world_size()), "ACCELERATE_TORCH_DEVICE": "cpu"})


def single_cpu_worker(worker_group) -> bool:
    """One worker and no GPU: no process group, no device to select (see the module docstring)."""
    return len(worker_group) == 1 and not worker_group.get_resources_per_worker().get("GPU", 0)


def worker_has_gpu() -> bool:
    """Whether Ray gave this worker a GPU (what Ray's ``get_device`` and context manager look at); False
    outside Ray."""
    return ray.is_initialized() and bool(ray.get_gpu_ids())


def _setup_process_group(**kwargs) -> None:
    _ray_torch_config()._setup_torch_process_group(**kwargs)


def _shutdown_torch(destroy_process_group: bool) -> None:
    _ray_torch_config()._shutdown_torch(destroy_process_group=destroy_process_group)


class WorkerTorchContext:
    """Ray's ``TorchConfigContextManager`` (sets the worker's CUDA device), looked up on the worker."""

    def __enter__(self):
        self._inner = _ray_torch_config().TorchConfigContextManager() if worker_has_gpu() else None
        return self._inner.__enter__() if self._inner is not None else None

    def __exit__(self, exc_type, exc, tb):
        return self._inner.__exit__(exc_type, exc, tb) if self._inner is not None else False


@dataclass
class LazyTorchConfig(BackendConfig):
    """``ray.train.torch.TorchConfig``'s settings; ``backend`` None lets TorchTrainer pick gloo or nccl."""

    backend: str | None = None
    timeout_s: int = 1800

    @property
    def backend_cls(self):
        return LazyTorchBackend

    @property
    def train_func_context(self):
        return WorkerTorchContext

    @property
    def framework(self):
        from ray.train.v2._internal.util import TrainingFramework

        return TrainingFramework.TORCH

    def to_dict(self) -> dict:
        return {"backend": self.backend, "init_method": "env", "timeout_s": self.timeout_s}


class LazyTorchBackend(Backend):
    """The controller side of Ray's ``_TorchBackend`` for ``env://`` process groups."""

    share_cuda_visible_devices: bool = True

    def on_start(self, worker_group, backend_config: LazyTorchConfig):
        from ray.train._internal.utils import get_address_and_port

        if single_cpu_worker(worker_group):
            worker_group.execute(_set_single_cpu_worker_env_vars)
            return
        backend = backend_config.backend or (
            "nccl" if worker_group.get_resources_per_worker().get("GPU", 0) > 0 else "gloo")
        addr, port = worker_group.execute_single(0, get_address_and_port)
        worker_group.execute(_set_master_address, addr=addr, port=port)
        worker_group.execute(_set_distributed_env_vars)
        size = len(worker_group)
        ray.get([
            worker_group.execute_single_async(
                rank, _setup_process_group, backend=backend, world_rank=rank, world_size=size,
                init_method="env://", timeout_s=backend_config.timeout_s)
            for rank in range(size)
        ])

    def on_shutdown(self, worker_group, backend_config: LazyTorchConfig):
        from ray.exceptions import GetTimeoutError

        if single_cpu_worker(worker_group):
            return  # no process group to destroy, no CUDA cache to empty
        futures = worker_group.execute_async(_shutdown_torch, destroy_process_group=len(worker_group) > 1)
        timeout_s = env_integer(TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S, DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S)
        try:
            ray.get(futures, timeout=timeout_s)
        except GetTimeoutError:
            logger.warning("torch process group shutdown timed out after %s s", timeout_s)
