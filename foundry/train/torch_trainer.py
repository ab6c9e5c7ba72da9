"""Ray Train's ``TorchTrainer``, with or without its per-run ``PlacementGroupCleaner``.

Ray Train 2.60 starts, for every ``fit()``, a detached ``PlacementGroupCleaner`` actor: one more Python
process (Ray reports ~600 MB each in production, ray-project/ray#65443) that asks the state API every
second whether the controller still lives, so that it can remove the run's placement group if the
controller dies while the job that started it lives on (ray-project/ray#58515: a placement group is
freed only once both its creating actor and its job are gone). Here that process costs 1-1.5 s of a
1-worker ``fit()`` on 2 cores (1.1 s in an A/B of real fits, 1.5 s on an empty loop): its start
competes with the controller's and the worker's, and ``fit()`` returns only after the cleaner's
monitor thread, which sleeps up to 1 s, has stopped (benchmarks/results/train.json ``fit_breakdown``).

Which runs need it: a Tune sweep, whose job outlives a failed trial (a leaked group would hold the
next trials' CPUs), so a trial always gets it (foundry/train/tuning.py). A single ``fit()`` is the
whole retrain job: when it fails the job exits and Ray frees the group with it, so it goes without
unless ``trainer.placement_group_cleaner`` is set.
"""

from __future__ import annotations

from ray.train.torch import TorchTrainer
from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback


class TorchTrainerWithoutCleaner(TorchTrainer):
    """A ``TorchTrainer`` whose controller runs every default callback but the placement-group cleaner."""

    def _create_default_callbacks(self):
        return [c for c in super()._create_default_callbacks() if not isinstance(c, PlacementGroupCleanerCallback)]


def trainer_class(placement_group_cleaner: bool) -> type[TorchTrainer]:
    return TorchTrainer if placement_group_cleaner else TorchTrainerWithoutCleaner
