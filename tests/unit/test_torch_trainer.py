"""The trainer a fit gets (foundry/train/torch_trainer.py, foundry/train/trainer.py): Ray Train's own
callbacks less the placement-group cleaner, and less the dataset manager when no dataset is handed to
it (what build_trainer sets: tests/integration/test_train_ingest.py). Fails when a Ray upgrade renames
or drops one of these callbacks, which is the moment to re-measure what each process costs a fit."""

from __future__ import annotations

from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

from foundry.train.torch_trainer import LeanTorchTrainer, LeanTorchTrainerWithCleaner, trainer_class

CLEANER, DATASETS = PlacementGroupCleanerCallback.__name__, DatasetsCallback.__name__


def _callback_types(cls, tmp_path, datasets=None) -> list[str]:
    trainer = cls(lambda: None, scaling_config=ScalingConfig(num_workers=1), datasets=datasets,
                  run_config=RunConfig(name="callbacks", storage_path=str(tmp_path)))
    return [type(c).__name__ for c in trainer._create_default_callbacks()]


def test_the_cleaner_and_the_idle_dataset_manager_are_left_out(tmp_path):
    ray_own = _callback_types(TorchTrainer, tmp_path)
    assert CLEANER in ray_own and DATASETS in ray_own
    assert _callback_types(LeanTorchTrainer, tmp_path) == [n for n in ray_own if n not in (CLEANER, DATASETS)]
    assert _callback_types(LeanTorchTrainerWithCleaner, tmp_path) == [n for n in ray_own if n != DATASETS]


def test_a_streamed_dataset_keeps_the_dataset_manager(tmp_path):
    streamed = {"train": lambda: None}  # a dataset factory, never called here (no Ray in unit tests)
    assert DATASETS in _callback_types(LeanTorchTrainer, tmp_path, streamed)
    assert CLEANER not in _callback_types(LeanTorchTrainer, tmp_path, streamed)


def test_the_config_flag_picks_the_class():
    assert trainer_class(True) is LeanTorchTrainerWithCleaner
    assert trainer_class(False) is LeanTorchTrainer
