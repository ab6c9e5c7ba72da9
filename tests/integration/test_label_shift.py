"""Label shift heals end to end (issue 14), on the shared cluster, over real HTTP and the real Jobs API.

``label_shift`` moves only the churn rate (~27% -> ~50%: the concept's intercept), not the inputs nor
how they rank customers. The monitor sees it in the error stream (the concept detector), submits one
retrain, and the challenger, better calibrated to the new base rate, must be promoted and rolled out:
a gate that compares ranking alone (ROC AUC, which a pure label shift does not move) used to reject it
about 19 times in 20, and each rejection was followed by a new episode after the cooldown, forever.

Set-up as ``test_self_healing`` (``tests/healing.py``: v1 built without Ray, served and watched with the
user's commands, a real ``jobs.train`` retrain); only the traffic differs. No request may fail.
"""

from __future__ import annotations

import httpx
import pytest

from foundry.demo.traffic import accuracy, scenario_rows
from tests.healing import QUICK_RETRAIN, drift_until, watched_model

KEY = "label-shift-key-" + "KyvSTbnNTlTSO3Cm2S2u2y97"
MODEL = "labelshift"
HEAL_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def loop(ray_cluster, serve_port, tmp_path_factory):
    with watched_model(ray_cluster, serve_port, tmp_path_factory.mktemp("labelshift-v1"), MODEL, KEY,
                       [QUICK_RETRAIN]) as watched:
        yield watched


def test_label_shift_is_detected_retrained_once_promoted_and_rolled_out(loop, job_client):
    events = drift_until(loop, timeout_s=HEAL_TIMEOUT_S, scenario="label_shift")
    kinds = [e["kind"] for e in events]
    story = [(e["kind"], e["message"]) for e in events]
    assert "drift_detected" in kinds, story
    # Exactly one retrain, through the Jobs API: a rejected challenger (and a second attempt) fails here.
    assert kinds.count("retrain_submitted") == 1, story
    jobs = [j for j in job_client.list_jobs() if (j.metadata or {}).get("model") == MODEL]
    assert len(jobs) == 1, [(j.submission_id, j.status, j.message) for j in jobs]
    assert "rejected" not in kinds, story
    order = ["drift_detected", "retrain_submitted", "retrain_finished", "promoted", "rolled_out"]
    assert [k for k in kinds if k in order] == order, story
    new = next(e for e in events if e["kind"] == "promoted")["version"]
    assert new != loop.v1 and loop.registry.alias(MODEL, "production") == new
    # Serve answers with the challenger.
    features, _ = next(scenario_rows("label_shift", 3, seed=999))
    r = httpx.post(f"{loop.traffic.url}/predict", json={"rows": features}, headers={"X-API-Key": KEY}, timeout=30)
    assert r.status_code == 200 and r.json()["model_version"] == new
    # Users saw better answers on label-shifted rows after the heal than before it.
    log = loop.traffic.log.records
    before = [x for x in log if x.phase == "drift" and x.version == loop.v1]
    after = [x for x in log if x.phase == "drift" and x.version == new]
    assert after, "no label-shifted request was answered by the new version"
    assert accuracy(after) > accuracy(before), (accuracy(after), accuracy(before))
    assert not loop.traffic.log.failed(), loop.traffic.log.failed()[:3]
    print(f"\nlabel shift healed: live accuracy {accuracy(before):.3f} -> {accuracy(after):.3f}")
