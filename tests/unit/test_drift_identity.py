"""Episode numbers never go back (foundry/drift/identity.py): the floor is the highest number that the
stored events, the registry's lineage or the Jobs API's submission ids name, so wiping the monitoring
folder (state.json and events) cannot make a new episode reuse an old id and replay its outcome."""

from __future__ import annotations

from types import SimpleNamespace

from foundry.drift.events import EventLog
from foundry.drift.identity import episode_floor, from_jobs, from_registry

MODEL = "churn"


class _Registry:
    def __init__(self, episodes: list[str | None], fail: bool = False):
        self.episodes, self.fail = episodes, fail

    def versions(self, model):
        if self.fail:
            raise OSError("registry unreachable")
        return [SimpleNamespace(metadata={"lineage": {"drift_episode": e}}) for e in self.episodes]


class _Jobs:
    def __init__(self, ids: list[str], fail: bool = False):
        self.ids, self.fail = ids, fail

    def list_jobs(self):
        if self.fail:
            raise ConnectionError("dashboard restarting")
        return [SimpleNamespace(submission_id=i) for i in self.ids]


def test_every_source_counts_and_the_highest_wins(tmp_path):
    root = str(tmp_path)
    assert episode_floor(root, MODEL, _Registry([]), _Jobs([])) == 0
    EventLog(root, MODEL).write("drift_detected", "x", episode=f"{MODEL}-v1-e2")
    assert episode_floor(root, MODEL, _Registry([None, f"{MODEL}-v1-e1"]), _Jobs([])) == 2
    assert episode_floor(root, MODEL, _Registry([f"{MODEL}-v2-e5"]), _Jobs([])) == 5
    # A failed retrain registers nothing; the Jobs API still knows its submission id.
    v = "v20261130-114032-343-c0cf4f"
    jobs = _Jobs([f"foundry-retrain-{MODEL}-{v}-e7-a2", "raysubmit_abc", f"foundry-retrain-other-{v}-e9-a1",
                  # another model whose name starts with this one's ("churn-x"): not this model's history
                  f"foundry-retrain-{MODEL}-x-{v}-e8-a1"])
    assert episode_floor(root, MODEL, _Registry([f"{MODEL}-v2-e5"]), jobs) == 7


def test_an_unreadable_source_is_skipped_not_fatal(tmp_path):
    assert from_jobs(_Jobs([], fail=True), MODEL) == 0
    assert from_registry(_Registry([], fail=True), MODEL) == 0
    floor = episode_floor(str(tmp_path), MODEL, _Registry([f"{MODEL}-v1-e3"]), _Jobs([], fail=True))
    assert floor == 3
