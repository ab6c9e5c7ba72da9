"""The retrain controller's contract: when a drift episode starts, that it runs one job at a time,
retries with backoff, tries again on more data after a rejection, gives up after bounded attempts and
episodes, cools down, and survives a monitor restart without submitting twice (or retraining again
after giving up).

No Ray and no wall clock: ``now`` is a plain float, so every timing rule is checked exactly.
"""

from __future__ import annotations

import json

import pytest

from foundry.config import RetrainConfig
from foundry.drift.controller import (
    Action,
    ControllerState,
    Phase,
    RetrainController,
    episode_id,
    submission_id,
)

MODEL = "churn"
V1 = "v1"
COOLDOWN = 100.0
BACKOFF = 10.0
FACTOR = 3.0
RETRIES = 2
REJECTION_WAIT = 20.0
MORE_ROWS = 500
ATTEMPTS = 3
EPISODES = 3
PERIOD = 10_000.0


def retrain_cfg(**changes) -> RetrainConfig:
    values = {"cooldown_s": COOLDOWN, "max_retries": RETRIES, "backoff_s": BACKOFF, "backoff_factor": FACTOR,
              "rejection_wait_s": REJECTION_WAIT, "more_rows_after_rejection": MORE_ROWS,
              "max_attempts": ATTEMPTS, "max_episodes": EPISODES, "episode_period_s": PERIOD}
    return RetrainConfig(**{**values, **changes})


def controller(consecutive: int = 2, state: ControllerState | None = None, **changes) -> RetrainController:
    return RetrainController(retrain_cfg(**changes), MODEL, consecutive,
                             state if state is not None else ControllerState(reference_version=V1))


def start_episode(c: RetrainController, now: float = 0.0):
    """Drifted rounds until the controller submits; returns that decision."""
    for i in range(c.consecutive_required):
        decision = c.observe(True, now + i)
    assert decision.action is Action.submit
    return decision


# ---- starting an episode -----------------------------------------------------------------------------


@pytest.mark.parametrize("required", [1, 2, 3])
def test_a_submission_needs_the_configured_consecutive_drifted_rounds(required):
    c = controller(consecutive=required)
    for i in range(required - 1):
        d = c.observe(True, float(i))
        assert d.action is Action.none and f"{i + 1} of {required}" in d.reason
        assert c.state.phase is Phase.idle and c.state.consecutive == i + 1
    d = c.observe(True, 10.0)
    assert d.action is Action.submit
    assert d.attempt == 1 and d.episode_id == episode_id(MODEL, V1, 1)
    assert d.submission_id == submission_id(MODEL, V1, 1, 1) == c.state.submission_id
    assert c.state.phase is Phase.running and c.state.submitted_at == 10.0


def test_a_clean_round_resets_the_evidence():
    c = controller(consecutive=2)
    assert c.observe(True, 0.0).action is Action.none
    assert c.observe(False, 1.0).action is Action.none
    assert c.state.consecutive == 0
    assert c.observe(True, 2.0).action is Action.none  # 1 of 2 again, not 2 of 2
    assert c.observe(True, 3.0).action is Action.submit


def test_only_one_job_runs_at_a_time():
    c = controller(consecutive=1)
    first = c.observe(True, 0.0)
    assert first.action is Action.submit
    for t in range(1, 20):
        d = c.observe(True, float(t))
        assert d.action is Action.none and "already running" in d.reason
        assert c.tick(float(t)).action is Action.none
    assert c.state.episode == 1 and c.state.attempt == 1
    assert c.state.submission_id == first.submission_id


def test_disabled_retrain_never_submits():
    c = controller(consecutive=1, enabled=False)
    for t in range(10):
        d = c.observe(True, float(t))
        assert d.action is Action.none and "enabled=false" in d.reason
        assert c.tick(float(t)).action is Action.none
    assert c.state.phase is Phase.idle and c.state.episode == 0 and c.state.submission_id is None


# ---- submission ids ------------------------------------------------------------------------------------


def test_submission_ids_are_deterministic_and_distinct():
    assert submission_id(MODEL, V1, 1, 1) == submission_id(MODEL, V1, 1, 1)
    ids = {submission_id(m, v, e, a) for m in (MODEL, "other") for v in (V1, "v2") for e in (1, 2) for a in (1, 2, 3)}
    assert len(ids) == 2 * 2 * 2 * 3
    assert episode_id(MODEL, V1, 1) in submission_id(MODEL, V1, 1, 2)


def test_a_restarted_controller_derives_the_same_submission_id():
    a, b = controller(consecutive=1), controller(consecutive=1)
    assert a.observe(True, 0.0).submission_id == b.observe(True, 123.0).submission_id


def test_ids_differ_per_episode_and_per_reference_version():
    c = controller(consecutive=1, max_episodes=10)
    seen = [c.observe(True, 0.0).submission_id]
    c.job_finished("promoted", 1.0)
    c.tick(1.0 + COOLDOWN)
    seen.append(c.observe(True, 2.0 + COOLDOWN).submission_id)
    assert c.state.episode == 2
    c.job_finished("promoted", 3.0 + COOLDOWN)
    c.rebase("v2")
    c.tick(3.0 + 2 * COOLDOWN)
    d = c.observe(True, 4.0 + 2 * COOLDOWN)
    seen.append(d.submission_id)
    assert c.state.episode == 3 and d.episode_id == episode_id(MODEL, "v2", 3)  # numbers never restart
    assert None not in seen and len(set(seen)) == 3
    # Back on v1 (a rollback by hand): the next episode's id is new, not v1's first one again.
    c.job_finished("promoted", 5.0 + 2 * COOLDOWN)
    c.rebase("v1")
    c.tick(6.0 + 3 * COOLDOWN)
    again = c.observe(True, 7.0 + 3 * COOLDOWN)
    assert again.episode_id == episode_id(MODEL, "v1", 4) and again.submission_id not in seen


# ---- cooldown ------------------------------------------------------------------------------------------


def test_a_promoted_episode_cools_down_then_needs_fresh_evidence():
    c = controller(consecutive=2)
    start_episode(c, 0.0)
    done = c.job_finished("promoted", 50.0, "auc 0.9")
    assert done.action is Action.finished and done.detail == {"outcome": "promoted"}
    assert done.episode_id == episode_id(MODEL, V1, 1) and done.attempt == 1
    assert c.state.phase is Phase.cooldown and c.state.wait_until == 50.0 + COOLDOWN
    assert c.state.submission_id is None

    for t in (51.0, 52.0, 100.0, 149.0):  # drift during the cooldown does not start an episode
        d = c.observe(True, t)
        assert d.action is Action.none and "cooling down" in d.reason
        assert c.tick(t).action is Action.none
    assert c.state.phase is Phase.cooldown

    c.tick(150.0)  # the cooldown is over; the rounds seen during it do not count
    assert c.state.phase is Phase.idle and c.state.consecutive == 0
    assert c.observe(True, 151.0).action is Action.none
    d = c.observe(True, 152.0)
    assert d.action is Action.submit and d.episode_id == episode_id(MODEL, V1, 2) and d.attempt == 1


def test_a_job_outcome_without_a_running_job_is_ignored():
    c = controller(consecutive=1)
    assert c.job_finished("promoted", 0.0).action is Action.none
    assert c.state.phase is Phase.idle


# ---- retries ---------------------------------------------------------------------------------------------


def test_a_failed_job_is_retried_after_exponential_backoff_then_exhausted():
    c = controller(consecutive=1)
    first = c.observe(True, 0.0)
    now = 5.0
    ids = [first.submission_id]
    for attempt in range(1, RETRIES + 1):
        d = c.job_finished("failed", now, "boom")
        delay = BACKOFF * FACTOR ** (attempt - 1)
        assert d.action is Action.none and d.detail == {"retry_in_s": delay} and d.attempt == attempt
        assert c.state.phase is Phase.backoff and c.state.wait_until == now + delay
        assert c.tick(now + delay - 0.001).action is Action.none  # not before the backoff is over
        assert c.observe(True, now + delay - 0.001).action is Action.none  # nor on new drift
        assert c.state.phase is Phase.backoff and c.state.attempt == attempt
        retry = c.tick(now + delay)
        assert retry.action is Action.submit and retry.attempt == attempt + 1
        assert retry.episode_id == first.episode_id
        assert retry.submission_id == submission_id(MODEL, V1, 1, attempt + 1)
        ids.append(retry.submission_id)
        now += delay + 1.0
    assert len(set(ids)) == RETRIES + 1

    d = c.job_finished("failed", now, "boom")
    assert d.action is Action.exhausted and d.episode_id == first.episode_id and d.attempt == RETRIES + 1
    assert c.state.phase is Phase.cooldown and c.state.wait_until == now + COOLDOWN
    assert c.tick(now + COOLDOWN - 1).action is Action.none
    assert c.observe(True, now + COOLDOWN - 1).action is Action.none


def test_a_retry_past_its_backoff_is_left_to_tick_not_lost_in_observe():
    """The monitor runs a test round (observe) before tick in the same step: the due retry must
    still come out of tick as a submit, never be started inside observe and dropped."""
    c = controller(consecutive=1)
    c.observe(True, 0.0)
    c.job_finished("failed", 1.0)
    due = 1.0 + BACKOFF
    d = c.observe(True, due + 5)
    assert d.action is Action.none
    assert c.state.phase is Phase.backoff and c.state.submission_id is None
    retry = c.tick(due + 5)
    assert retry.action is Action.submit and retry.attempt == 2
    assert retry.submission_id == submission_id(MODEL, V1, 1, 2)


def test_no_retries_means_the_first_failure_exhausts():
    c = controller(consecutive=1, max_retries=0)
    c.observe(True, 0.0)
    assert c.job_finished("failed", 1.0).action is Action.exhausted
    assert c.state.phase is Phase.cooldown


# ---- cancel / rebase ---------------------------------------------------------------------------------------


def test_cancel_undoes_a_first_submission_and_reuses_the_episode():
    c = controller(consecutive=2)
    first = start_episode(c, 0.0)
    c.cancel()
    assert c.state.phase is Phase.idle and c.state.episode == 0 and c.state.attempt == 0
    assert c.state.submission_id is None and c.state.submitted_at is None
    again = c.observe(True, 5.0)  # the evidence is kept: the next drifted round submits again
    assert again.action is Action.submit
    assert again.episode_id == first.episode_id and again.submission_id == first.submission_id


def test_cancel_of_a_retry_goes_back_to_backoff_for_the_same_attempt():
    c = controller(consecutive=1)
    c.observe(True, 0.0)
    c.job_finished("failed", 1.0)
    retry = c.tick(1.0 + BACKOFF)
    c.cancel()
    assert c.state.phase is Phase.backoff and c.state.attempt == 1 and c.state.episode == 1
    again = c.tick(2.0 + BACKOFF)
    assert again.action is Action.submit and again.submission_id == retry.submission_id


def test_cancel_without_a_running_job_does_nothing():
    c = controller(consecutive=1)
    c.cancel()
    assert c.state == ControllerState(reference_version=V1)


def test_rebase_restarts_the_evidence_but_keeps_the_cooldown_and_the_episode_count():
    c = controller(consecutive=2)
    start_episode(c, 0.0)
    old = c.current_episode_id
    c.job_finished("promoted", 10.0)
    c.rebase("v2")
    assert c.state.reference_version == "v2" and c.state.episode == 1 and c.state.consecutive == 0
    assert c.state.phase is Phase.cooldown and c.state.wait_until == 10.0 + COOLDOWN
    assert c.current_episode_id != old


# ---- persistence -----------------------------------------------------------------------------------------


def test_state_round_trips_through_json():
    c = controller(consecutive=1)
    c.observe(True, 0.0)
    c.job_finished("failed", 1.0)
    c.tick(1.0 + BACKOFF)
    raw = json.loads(json.dumps(c.state.to_dict()))
    assert raw["phase"] == "running"
    restored = ControllerState.from_dict(raw)
    assert restored == c.state and restored.phase is Phase.running
    assert ControllerState.from_dict({}) == ControllerState()
    assert ControllerState.from_dict({**raw, "from_a_newer_version": 1}) == c.state


def test_a_controller_restored_while_running_does_not_submit_again():
    c = controller(consecutive=1)
    first = c.observe(True, 0.0)
    saved = json.dumps(c.state.to_dict())

    restored = controller(consecutive=1, state=ControllerState.from_dict(json.loads(saved)))
    assert restored.state.submission_id == first.submission_id
    for t in range(1, 10):
        assert restored.observe(True, float(t)).action is Action.none
        assert restored.tick(float(t)).action is Action.none
    done = restored.job_finished("promoted", 20.0)
    assert done.action is Action.finished and done.episode_id == first.episode_id


def test_a_controller_restored_in_backoff_keeps_the_schedule():
    c = controller(consecutive=1)
    c.observe(True, 0.0)
    c.job_finished("failed", 1.0)
    restored = controller(consecutive=1, state=ControllerState.from_dict(json.loads(json.dumps(c.state.to_dict()))))
    assert restored.tick(1.0 + BACKOFF - 1).action is Action.none
    d = restored.tick(1.0 + BACKOFF)
    assert d.action is Action.submit and d.submission_id == submission_id(MODEL, V1, 1, 2)


# ---- after a rejection: a short wait and more data --------------------------------------------------------


def test_a_rejection_is_followed_by_the_rejection_wait_not_the_cooldown_then_the_same_episode_on_new_data():
    assert REJECTION_WAIT < COOLDOWN
    c = controller(consecutive=2)
    first = start_episode(c, 0.0)
    assert first.data_generation == 1
    d = c.job_finished("rejected", 50.0, "not better")
    assert d.action is Action.none and d.detail == {"retry_in_s": REJECTION_WAIT}
    assert "attempt 2" in d.reason and f"{MORE_ROWS} more labelled rows" in d.reason
    assert c.state.phase is Phase.more_data and c.state.wait_until == 50.0 + REJECTION_WAIT
    assert c.state.outcomes == ["rejected"]
    for t in (51.0, 60.0, 50.0 + REJECTION_WAIT - 0.001):
        assert c.observe(True, t).action is Action.none  # drift goes on: no new episode meanwhile
        assert c.tick(t).action is Action.none
    retry = c.tick(50.0 + REJECTION_WAIT)  # not 50 + COOLDOWN
    assert retry.action is Action.submit and retry.episode_id == first.episode_id and retry.attempt == 2
    assert retry.submission_id == submission_id(MODEL, V1, 1, 2)
    assert retry.data_generation == 2 and retry.detail == {"new_data": True, "min_new_rows": MORE_ROWS}
    assert c.state.episode == 1


def test_an_attempt_after_a_rejection_waits_until_the_caller_has_the_new_rows():
    c = controller(consecutive=1)
    c.observe(True, 0.0)
    c.job_finished("rejected", 1.0)
    due = 1.0 + REJECTION_WAIT
    asked = c.tick(due)
    c.cancel()  # fewer than more_rows_after_rejection new labelled rows: not submitted
    assert c.state.phase is Phase.more_data and c.state.attempt == 1 and c.state.data_generation == 1
    assert c.state.submission_id is None
    again = c.tick(due + 1)  # asked again (the caller keeps that cheap), same attempt and data set
    assert again.action is Action.submit and again.submission_id == asked.submission_id
    assert again.data_generation == 2 and again.detail["new_data"]
    # A failed attempt on the new set is retried on that same set (no new rows needed).
    c.job_finished("failed", due + 2)
    assert c.state.phase is Phase.backoff
    retry = c.tick(due + 2 + BACKOFF)
    assert retry.action is Action.submit and retry.attempt == 3 and retry.data_generation == 2
    assert "new_data" not in retry.detail


# ---- giving up -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("outcomes", [["rejected"] * ATTEMPTS, ["rejected", "failed", "rejected"]])
def test_max_attempts_gives_up_and_nothing_more_is_submitted_while_the_drift_persists(outcomes):
    c = controller(consecutive=1)
    now = 0.0
    submitted = [c.observe(True, now)]
    for i, outcome in enumerate(outcomes):
        now += 1.0
        d = c.job_finished(outcome, now, "auc 0.70 vs 0.75")
        if i < len(outcomes) - 1:
            now += max(REJECTION_WAIT, BACKOFF * FACTOR ** 2)
            submitted.append(c.tick(now))
            assert submitted[-1].action is Action.submit
    assert [s.attempt for s in submitted] == list(range(1, ATTEMPTS + 1))
    assert len({s.episode_id for s in submitted}) == 1
    assert d.action is Action.gave_up and d.episode_id == submitted[0].episode_id and d.attempt == ATTEMPTS
    assert d.detail["why"] == "max_attempts" and d.detail["outcomes"] == outcomes
    assert f"{ATTEMPTS} attempts" in d.reason and ", ".join(outcomes) in d.reason
    assert c.state.phase is Phase.gave_up

    restored = controller(consecutive=1, state=ControllerState.from_dict(json.loads(json.dumps(c.state.to_dict()))))
    for ctl in (c, restored):  # also a restarted monitor's controller: no retrain resumes
        for t in range(10):
            assert ctl.observe(True, now + 1000.0 * t).action is Action.none
            assert ctl.tick(now + 1000.0 * t).action is Action.none
        assert ctl.state.phase is Phase.gave_up and ctl.state.episode == 1 and ctl.state.attempt == ATTEMPTS

    # The monitor re-based on the new normal: a cooldown, then only fresh evidence starts an episode.
    c.accept_new_normal(now)
    assert c.state.phase is Phase.cooldown and c.state.wait_until == now + COOLDOWN and c.state.consecutive == 0
    assert c.observe(True, now + 1).action is Action.none
    c.tick(now + COOLDOWN)
    d = c.observe(True, now + COOLDOWN + 1)
    assert d.action is Action.submit and d.episode_id == episode_id(MODEL, V1, 2)


def test_max_episodes_per_period_gives_up_instead_of_starting_another():
    c = controller(consecutive=1, max_episodes=2)
    now = 0.0
    for episode in (1, 2):
        c.tick(now)  # the cooldown ends
        d = c.observe(True, now)
        assert d.action is Action.submit and d.episode_id == episode_id(MODEL, V1, episode)
        c.job_finished("promoted", now + 1)  # healed, and yet the drift comes back
        now += 1 + COOLDOWN
    c.tick(now)
    d = c.observe(True, now)
    assert d.action is Action.gave_up and d.detail["why"] == "max_episodes" and d.detail["episodes_in_period"] == 2
    assert "max_episodes=2" in d.reason and d.episode_id == episode_id(MODEL, V1, 2)
    assert c.state.phase is Phase.gave_up and c.state.episode == 2
    assert c.tick(now + 1).action is Action.none and c.observe(True, now + 2).action is Action.none

    # Once the first episode is older than the period, another may start.
    c.accept_new_normal(now)
    later = PERIOD + 1.0
    c.tick(later)
    d = c.observe(True, later)
    assert d.action is Action.submit and d.episode_id == episode_id(MODEL, V1, 3)
    assert c.state.episode_starts == [1.0 + COOLDOWN, later]


def test_an_episode_waiting_for_labels_uses_up_no_episode_budget():
    c = controller(consecutive=1, max_episodes=1)
    for t in range(5):
        assert c.observe(True, float(t)).action is Action.submit
        c.cancel()
    assert c.state.episode_starts == [] and c.state.episode == 0
    assert c.observe(True, 9.0).action is Action.submit


def test_another_served_version_ends_a_give_up():
    c = controller(consecutive=1)
    c.observe(True, 0.0)
    for t in (1.0, 2.0 + REJECTION_WAIT, 3.0 + 2 * REJECTION_WAIT):
        c.job_finished("rejected", t)
        c.tick(t + REJECTION_WAIT)
    assert c.state.phase is Phase.gave_up
    c.rebase("v2")
    assert c.state.phase is Phase.idle
    d = c.observe(True, 1000.0)
    assert d.action is Action.submit and d.episode_id == episode_id(MODEL, "v2", 2)


@pytest.mark.parametrize("stop_on_no_gain", [True, False])
def test_a_conclusive_rejection_gives_up_at_once_when_configured(stop_on_no_gain):
    """The gate said no retrain on these rows is plausibly worth a swap (a shift production already handles):
    no second and third attempt on more of the same rows, unless stop_on_no_gain is off."""
    c = controller(consecutive=1, stop_on_no_gain=stop_on_no_gain)
    first = c.observe(True, 0.0)
    d = c.job_finished("rejected", 1.0, "no gain to be had: ...", no_gain=True)
    if stop_on_no_gain:
        assert d.action is Action.gave_up and d.detail["why"] == "no_gain" and d.attempt == 1
        assert d.episode_id == first.episode_id and "no gain to be had" in d.reason
        assert c.state.phase is Phase.gave_up
        assert c.tick(1.0 + REJECTION_WAIT).action is Action.none
    else:
        assert d.action is Action.none and c.state.phase is Phase.more_data
    # An uncertain rejection (more rows could prove a gain) always tries again.
    c2 = controller(consecutive=1, stop_on_no_gain=stop_on_no_gain)
    c2.observe(True, 0.0)
    assert c2.job_finished("rejected", 1.0, "not better with enough evidence", no_gain=False).action is Action.none
    assert c2.state.phase is Phase.more_data
