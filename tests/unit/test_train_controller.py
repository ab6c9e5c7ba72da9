"""Ray Train's controller and workers without a runtime environment of their own
(foundry/train/train_controller.py, LeanTorchTrainer._initialize_and_run_controller): which variables
travel by argument, which still by runtime environment, and a pin on the Ray code re-stated. The real
fits are in tests/integration/test_train_ingest.py."""

from __future__ import annotations

import hashlib
import inspect
import os
import subprocess
import sys

import pytest
from ray.train.v2._internal.constants import ENV_VARS_TO_PROPAGATE
from ray.train.v2._internal.execution.controller.controller import TrainController
from ray.train.v2._internal.execution.worker_group.worker_group import WorkerGroup
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

from foundry.train import train_controller
from foundry.train.train_controller import (
    CONTROLLER_ENV_VARS,
    REPOLL_AFTER_REPORT_S,
    PlainEnvTrainController,
    PlainEnvWorkerGroup,
    split_controller_env,
    worker_runtime_env,
)

POLL, COLLECTIVE = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "RAY_TRAIN_COLLECTIVE_TIMEOUT_S"


def test_the_controller_keeps_its_own_variables_and_passes_on_the_rest():
    own, passed_on = split_controller_env({POLL: "0.2", COLLECTIVE: "30"})
    assert own == {POLL: "0.2"} and passed_on == {COLLECTIVE: "30"}
    assert CONTROLLER_ENV_VARS <= ENV_VARS_TO_PROPAGATE  # each is one Ray Train propagates today


def test_a_worker_gets_no_env_vars_when_only_the_controllers_are_set():
    assert worker_runtime_env({"env_vars": {POLL: "0.2"}}) == {}
    assert worker_runtime_env({"env_vars": {}}) == {}
    # The user's own worker runtime environment and a worker's variables are kept.
    mine = {"pip": ["x"], "env_vars": {POLL: "0.2", COLLECTIVE: "30", "MY_VAR": "1"}}
    assert worker_runtime_env(mine) == {"pip": ["x"], "env_vars": {COLLECTIVE: "30", "MY_VAR": "1"}}
    assert mine["env_vars"][POLL] == "0.2"  # not changed in place


def test_the_worker_group_applies_it_where_ray_builds_the_worker_env(monkeypatch):
    for name in ENV_VARS_TO_PROPAGATE:  # an earlier test's build_trainer sets two of them for good
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(POLL, "0.2")
    assert WorkerGroup._get_worker_runtime_env({})["env_vars"] == {POLL: "0.2"}  # Ray's own
    assert PlainEnvWorkerGroup._get_worker_runtime_env({}) == {}
    assert PlainEnvTrainController.worker_group_cls is PlainEnvWorkerGroup
    assert TrainController.worker_group_cls is WorkerGroup  # the attribute Ray's controller builds from


def test_the_controller_puts_its_variables_in_place_before_rays_init_reads_them(monkeypatch):
    assert "HEALTH_CHECK_INTERVAL_S_ENV_VAR" in inspect.getsource(TrainController.__init__)  # read there
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != POLL})
    seen = {}

    def ray_init(self, **kwargs):
        seen.update(poll=os.environ.get(POLL), kwargs=kwargs)

    monkeypatch.setattr(TrainController, "__init__", ray_init)
    PlainEnvTrainController(controller_env={POLL: "0.2"}, train_fn_ref="ref")
    assert seen == {"poll": "0.2", "kwargs": {"train_fn_ref": "ref"}}


# LeanTorchTrainer._initialize_and_run_controller re-states this function of Ray 2.60 with one change
# (the controller's variables by argument). When Ray changes it, re-read it, carry the change over
# to foundry/train/torch_trainer.py, and update the digest.
RAY_RUN_CONTROLLER_SHA256 = "ea57ec4498323973ffa0e70ad9c03641465b32b420381e791abd5fa8082d09e8"


def test_the_ray_code_re_stated_is_unchanged():
    source = inspect.getsource(DataParallelTrainer._initialize_and_run_controller)
    assert hashlib.sha256(source.encode()).hexdigest() == RAY_RUN_CONTROLLER_SHA256


def test_the_controller_module_imports_no_torch():
    code = ("import sys, foundry.train.train_controller; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _status(report: bool):
    from ray.train.v2._internal.execution.worker_group.poll import WorkerGroupPollStatus, WorkerStatus

    return WorkerGroupPollStatus(worker_statuses={0: WorkerStatus(running=True, training_report=object() if report
                                                                  else None)})


def test_a_poll_that_took_a_report_is_followed_by_another_at_once(monkeypatch):
    import asyncio

    polls = []

    async def ray_poll(self):  # Ray's _poll_workers: waits out the interval since _latest_poll_time, then polls
        polls.append(self._latest_poll_time)
        self._latest_poll_time = 100.0
        return _status(report=len(polls) == 1)

    monkeypatch.setattr(TrainController, "_poll_workers", ray_poll)
    monkeypatch.setattr(train_controller, "time_monotonic", lambda: 1000.0)
    controller = PlainEnvTrainController.__new__(PlainEnvTrainController)
    controller._latest_poll_time, controller._health_check_interval_s = 0.0, 2.0
    asyncio.run(controller._poll_workers())  # took a report: the next poll comes REPOLL_AFTER_REPORT_S later
    assert controller._latest_poll_time + 2.0 - 1000.0 == pytest.approx(REPOLL_AFTER_REPORT_S)
    asyncio.run(controller._poll_workers())  # took none: the next waits the interval, as in Ray
    assert controller._latest_poll_time == 100.0
    assert "_latest_poll_time" in inspect.getsource(RAY_POLL_WORKERS)  # what Ray waits from


RAY_POLL_WORKERS = TrainController._poll_workers
RAY_POLL_WORKERS_SHA256 = "eb70de21750ed85554daeab4fcb049d92bca93499b5460596c87603c7f0de4eb"


def test_rays_poll_is_unchanged():
    # PlainEnvTrainController._poll_workers relies on Ray's waiting out the interval from _latest_poll_time.
    source = inspect.getsource(RAY_POLL_WORKERS)
    assert hashlib.sha256(source.encode()).hexdigest() == RAY_POLL_WORKERS_SHA256
