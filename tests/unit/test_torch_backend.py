"""foundry/train/torch_backend.py: the backend config a Ray Train controller unpickles imports no torch,
and the worker-side functions it names are still in Ray's torch module (fails on a Ray upgrade that
renames them). A real process group is set up by it in tests/integration/test_train_ingest.py (2 workers,
gloo; a lone CPU worker gets none and never imports ray.train.torch)."""

from __future__ import annotations

import pickle
import subprocess
import sys

from foundry.train.torch_backend import LazyTorchBackend, LazyTorchConfig, WorkerTorchContext

CONTROLLER_SIDE = """
import pickle, sys
import ray.train.v2._internal.execution.controller.controller  # what the controller process imports
config = pickle.loads(sys.stdin.buffer.read())
assert config.backend == "gloo" and config.timeout_s == 60, config
assert config.backend_cls.__name__ == "LazyTorchBackend" and config.framework.name == "TORCH"
config.backend_cls()  # the controller instantiates the backend
assert config.to_dict() == {"backend": "gloo", "init_method": "env", "timeout_s": 60}
print("torch" in sys.modules)
"""


def test_the_controller_side_unpickles_without_importing_torch():
    done = subprocess.run([sys.executable, "-c", CONTROLLER_SIDE], check=True, capture_output=True,
                          input=pickle.dumps(LazyTorchConfig(backend="gloo", timeout_s=60)), timeout=120)
    assert done.stdout.decode().strip() == "False", done.stderr.decode()[-2000:]


def test_rays_torch_config_would_import_torch():
    # The control: Ray's own TorchConfig makes the same process import torch (what the lazy config saves).
    from ray.train.torch import TorchConfig

    code = CONTROLLER_SIDE.split("config = ")[0] + "pickle.loads(sys.stdin.buffer.read())\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          input=pickle.dumps(TorchConfig(backend="gloo")), timeout=120)
    assert done.stdout.decode().strip() == "True", done.stderr.decode()[-2000:]


def test_the_worker_side_names_are_rays():
    from ray.train.torch import config

    for name in ("_setup_torch_process_group", "_set_torch_distributed_env_vars", "_shutdown_torch",
                 "TorchConfigContextManager"):
        assert callable(getattr(config, name)), name
    assert LazyTorchConfig().train_func_context is WorkerTorchContext
    with WorkerTorchContext():  # CPU: Ray's context manager sets no device and must not fail
        pass
    assert LazyTorchBackend.share_cuda_visible_devices is True
