"""The trainer class a fit gets: Ray Train's own callbacks less the placement-group cleaner, or all of
them (foundry/train/torch_trainer.py). Fails when a Ray upgrade renames or drops the cleaner's callback,
which is the moment to re-measure whether it still costs a process per fit."""

from __future__ import annotations

from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

from foundry.train.torch_trainer import TorchTrainerWithoutCleaner, trainer_class


def _callback_types(cls, tmp_path) -> list[str]:
    trainer = cls(lambda: None, scaling_config=ScalingConfig(num_workers=1),
                  run_config=RunConfig(name="callbacks", storage_path=str(tmp_path)))
    return [type(c).__name__ for c in trainer._create_default_callbacks()]


def test_only_the_cleaner_is_left_out(tmp_path):
    ray_own = _callback_types(TorchTrainer, tmp_path)
    ours = _callback_types(TorchTrainerWithoutCleaner, tmp_path)
    assert PlacementGroupCleanerCallback.__name__ in ray_own
    assert ours == [name for name in ray_own if name != PlacementGroupCleanerCallback.__name__]


def test_the_config_flag_picks_the_class():
    assert trainer_class(True) is TorchTrainer
    assert trainer_class(False) is TorchTrainerWithoutCleaner
