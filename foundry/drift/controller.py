"""When to retrain: the monitor's decision logic, free of Ray, storage and wall clocks.

Every method takes ``now`` (seconds, any monotonic-enough clock) and returns a ``Decision``; the
monitor performs it (submit a job, write an event). The state is a plain dataclass that the monitor
persists after every change, so a restarted monitor continues exactly where it stopped: it never
submits a second job for an episode it already submitted (the submission id is derived from the
state, and the Jobs API refuses a duplicate id), and it keeps honouring cooldown and backoff.

Phases::

    idle --(votes in `consecutive` rounds)--> running(episode e, attempt 1, data set d1)
    idle --(votes, but max_episodes started in the last episode_period_s)--> gave_up
    running --promoted--> cooldown --(cooldown_s)--> idle
    running --rejected, attempts < max_attempts--> more_data
    more_data --(rejection_wait_s, then >= more_rows_after_rejection new labelled rows)--> running(attempt+1, d+1)
    running --failed, failures <= max_retries, attempts < max_attempts--> backoff
    backoff --(backoff_s * factor**(failures-1))--> running(attempt+1, same data set)
    running --failed, failures > max_retries--> cooldown (event: retries_exhausted)
    running --rejected or failed, attempt == max_attempts--> gave_up
    gave_up --(the monitor re-based on the new normal: accept_new_normal)--> cooldown
    gave_up --(another version serves: rebase)--> idle

Why a rejection is not a cooldown: the challenger lost on the rows it had, and a few more minutes of
labelled rows is what a second try needs (a cooldown of ``cooldown_s`` after a false alarm and a
rejection left 16 drifted rounds unanswered). Why there is an exit: a drift that no retrain heals
(the challenger keeps losing) used to mean a retrain every cooldown, forever. After ``max_attempts``
attempts, or ``max_episodes`` episodes within ``episode_period_s``, the controller gives up and the
monitor accepts the current distribution as the new normal for the production model.

``max_retries`` still bounds failed attempts: a broken job (a config error, a crashing cluster) is not
evidence that the drift cannot be healed, so exhausting it ends the episode with a cooldown as before;
``max_attempts`` counts every attempt (rejected or failed) and reaching it is the give-up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from foundry.config import RetrainConfig


class Phase(str, Enum):
    idle = "idle"
    running = "running"
    backoff = "backoff"
    cooldown = "cooldown"
    more_data = "more_data"  # the attempt was rejected: the next one waits for time and new labelled rows
    gave_up = "gave_up"  # no more retrains for this drift: the monitor accepts the new normal


class Action(str, Enum):
    none = "none"
    submit = "submit"  # submit the retrain job with Decision.submission_id
    exhausted = "exhausted"  # the episode's retries are used up (an event, then cooldown)
    finished = "finished"  # the episode ended (promoted); cooldown starts
    gave_up = "gave_up"  # attempts or episodes used up (an event, a metric, then the new normal)


@dataclass
class ControllerState:
    phase: Phase = Phase.idle
    episode: int = 0  # episodes this model's monitor started: never reset, so an episode id is never reused
    attempt: int = 0
    reference_version: str = ""
    submission_id: str | None = None
    submitted_at: float | None = None
    wait_until: float = 0.0  # end of backoff, cooldown or the wait after a rejection
    consecutive: int = 0  # test rounds in a row with enough votes
    data_generation: int = 0  # the episode's data set: +1 per attempt after a rejection (failed retries reuse it)
    outcomes: list[str] = field(default_factory=list)  # this episode's finished attempts: rejected | failed
    episode_starts: list[float] = field(default_factory=list)  # start times within the last episode_period_s

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["phase"] = self.phase.value
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ControllerState:
        raw = dict(raw)
        raw["phase"] = Phase(raw.get("phase", "idle"))
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    submission_id: str | None = None
    episode_id: str | None = None
    attempt: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
    data_generation: int = 0  # which of the episode's data sets the submission trains on


def episode_id(model: str, reference_version: str, episode: int) -> str:
    """Unique per model: the episode number only grows (across re-bases, rollbacks and restarts), so an
    id, the retrain job's submission id and the episode's stored data set name one episode forever."""
    return f"{model}-{reference_version}-e{episode}"


def submission_id(model: str, reference_version: str, episode: int, attempt: int) -> str:
    return f"foundry-retrain-{episode_id(model, reference_version, episode)}-a{attempt}"


class RetrainController:
    def __init__(self, cfg: RetrainConfig, model: str, consecutive_required: int, state: ControllerState):
        self.cfg = cfg
        self.model = model
        self.consecutive_required = consecutive_required
        self.state = state

    @property
    def current_episode_id(self) -> str:
        return episode_id(self.model, self.state.reference_version, self.state.episode)

    def _submit(self, now: float, reason: str, **detail: Any) -> Decision:
        s = self.state
        s.phase = Phase.running
        s.submission_id = submission_id(self.model, s.reference_version, s.episode, s.attempt)
        s.submitted_at = now
        return Decision(Action.submit, reason, s.submission_id, self.current_episode_id, s.attempt, detail,
                        s.data_generation)

    def observe(self, drifted: bool, now: float) -> Decision:
        """One test round's verdict (enough voting detectors flagged drift, or not)."""
        s = self.state
        s.consecutive = s.consecutive + 1 if drifted else 0
        # Only the cooldown may end here: a due retry is submitted by tick(), whose Decision the caller
        # performs (a retry started here would be lost: this method returns this round's decision).
        self._end_cooldown(now)
        if not drifted:
            return Decision(Action.none, "no drift")
        if s.consecutive < self.consecutive_required:
            return Decision(Action.none, f"drift in {s.consecutive} of {self.consecutive_required} rounds in a row")
        if not self.cfg.enabled:
            return Decision(Action.none, "drift.retrain.enabled=false")
        if s.phase is Phase.running:
            return Decision(Action.none, f"retrain {s.submission_id} already running")
        if s.phase is Phase.backoff:
            return Decision(Action.none, f"retry of episode {self.current_episode_id} waits until {s.wait_until:.0f}")
        if s.phase is Phase.more_data:
            return Decision(Action.none, f"attempt {s.attempt + 1} of episode {self.current_episode_id} waits for "
                            f"more labelled rows (not before {s.wait_until:.0f})")
        if s.phase is Phase.gave_up:
            return Decision(Action.none, f"gave up retraining for episode {self.current_episode_id}; accepting the "
                            "new normal")
        if s.phase is Phase.cooldown:
            return Decision(Action.none, f"cooling down until {s.wait_until:.0f}")
        period = self.cfg.episode_period_s
        s.episode_starts = [t for t in s.episode_starts if now - t < period]
        if len(s.episode_starts) >= self.cfg.max_episodes:
            return self._give_up(f"{len(s.episode_starts)} episodes started in the last {period:.0f} s "
                                 f"(drift.retrain.max_episodes={self.cfg.max_episodes}) and the drift persists; "
                                 f"the last, {self.current_episode_id}, ended with "
                                 f"{', '.join(s.outcomes) or 'a promotion'}", "max_episodes", s.attempt)
        s.episode += 1
        s.attempt = 1
        s.data_generation = 1
        s.outcomes = []
        s.episode_starts.append(now)
        return self._submit(now, f"drift in {s.consecutive} rounds in a row" if self.consecutive_required > 1
                            else "drift confirmed")

    def _end_cooldown(self, now: float) -> None:
        s = self.state
        if s.phase is Phase.cooldown and now >= s.wait_until:
            s.phase = Phase.idle
            s.consecutive = 0  # a new episode needs fresh evidence gathered after the cooldown

    def tick(self, now: float) -> Decision:
        """Time passing: ends cooldowns, and resubmits the episode once its backoff or rejection wait is
        over (after a rejection on a new, larger data set: the caller checks the new rows are there and
        calls ``cancel`` if not)."""
        s = self.state
        self._end_cooldown(now)
        if s.phase is Phase.backoff and now >= s.wait_until:
            s.attempt += 1
            return self._submit(now, f"retry {s.outcomes.count('failed')} of {self.cfg.max_retries} after a "
                                "failure, on the same data")
        if s.phase is Phase.more_data and now >= s.wait_until:
            s.attempt += 1
            s.data_generation += 1
            return self._submit(now, f"attempt {s.attempt} of {self.cfg.max_attempts} after a rejection, on new "
                                "data", new_data=True, min_new_rows=self.cfg.more_rows_after_rejection)
        return Decision(Action.none, s.phase.value)

    def job_finished(self, outcome: str, now: float, detail: str = "", no_gain: bool = False,
                     retryable: bool = True) -> Decision:
        """``outcome``: promoted | rejected (the job succeeded) | failed (it did not, or timed out).
        ``no_gain``: the gate rejected conclusively (not even plausibly better by the margin): with
        ``stop_on_no_gain`` the episode gives up at once rather than retrain on more of the same rows.
        ``retryable`` False: the attempt failed on its configuration (exit code 2), which a retry of the
        same command repeats: no retry, the retries count as used up."""
        s = self.state
        if s.phase is not Phase.running:
            return Decision(Action.none, f"no job running (phase {s.phase.value})")
        ep = self.current_episode_id
        attempt = s.attempt
        s.submission_id = None
        s.submitted_at = None
        if outcome == "promoted":
            s.phase = Phase.cooldown
            s.wait_until = now + self.cfg.cooldown_s
            return Decision(Action.finished, f"{outcome}: {detail}".rstrip(": "), episode_id=ep, attempt=attempt,
                            detail={"outcome": outcome})
        s.outcomes.append(outcome)
        failures = s.outcomes.count("failed")
        if outcome == "failed" and (failures > self.cfg.max_retries or not retryable):
            s.phase = Phase.cooldown
            s.wait_until = now + self.cfg.cooldown_s
            why = f"{self.cfg.max_retries} retries used up" if retryable else \
                "a configuration error, which a retry would repeat: not retried"
            return Decision(Action.exhausted, f"attempt {attempt} failed ({detail}); {why}", episode_id=ep,
                            attempt=attempt)
        if outcome == "rejected" and no_gain and self.cfg.stop_on_no_gain:
            return self._give_up(f"attempt {attempt} of episode {ep} shows no gain to be had: production already "
                                 f"handles this shift as well as a retrain on it ({detail})", "no_gain", attempt)
        if attempt >= self.cfg.max_attempts:
            last = f"; the last: {detail}" if detail else ""
            return self._give_up(f"{attempt} attempts of episode {ep} did not heal the drift "
                                 f"({', '.join(s.outcomes)}; drift.retrain.max_attempts={self.cfg.max_attempts}){last}",
                                 "max_attempts", attempt)
        if outcome == "rejected":
            wait = self.cfg.rejection_wait_s
            s.phase = Phase.more_data
            s.wait_until = now + wait
            return Decision(Action.none, f"attempt {attempt} rejected ({detail}); attempt {attempt + 1} in "
                            f"{wait:.0f} s, once {self.cfg.more_rows_after_rejection} more labelled rows exist",
                            episode_id=ep, attempt=attempt, detail={"retry_in_s": wait})
        delay = self.cfg.backoff_s * self.cfg.backoff_factor ** (failures - 1)
        s.phase = Phase.backoff
        s.wait_until = now + delay
        return Decision(Action.none, f"attempt {attempt} failed ({detail}); retrying in {delay:.0f} s",
                        episode_id=ep, attempt=attempt, detail={"retry_in_s": delay})

    def _give_up(self, reason: str, why: str, attempt: int) -> Decision:
        s = self.state
        s.phase = Phase.gave_up
        s.wait_until = 0.0
        return Decision(Action.gave_up, reason, episode_id=self.current_episode_id, attempt=attempt,
                        detail={"why": why, "outcomes": list(s.outcomes), "episodes_in_period": len(s.episode_starts)})

    def accept_new_normal(self, now: float) -> None:
        """The monitor re-based its detectors on the current distribution (after giving up): the drift
        that could not be healed is the new normal. A cooldown, then fresh evidence for any new drift."""
        s = self.state
        if s.phase is not Phase.gave_up:
            return
        s.phase = Phase.cooldown
        s.wait_until = now + self.cfg.cooldown_s
        s.consecutive = 0

    def cancel(self) -> None:
        """The submission just decided could not be made (no data yet): undo it, keep the evidence."""
        s = self.state
        if s.phase is not Phase.running:
            return
        s.submission_id = None
        s.submitted_at = None
        if s.attempt <= 1:
            s.phase = Phase.idle
            s.episode -= 1
            s.attempt = 0
            s.data_generation = 0
            if s.episode_starts:
                s.episode_starts.pop()
        elif s.outcomes and s.outcomes[-1] == "rejected":  # waits for new rows: asked again next tick
            s.phase = Phase.more_data
            s.attempt -= 1
            s.data_generation -= 1
            s.wait_until = 0.0
        else:
            s.phase = Phase.backoff
            s.attempt -= 1
            s.wait_until = 0.0

    def rebase(self, reference_version: str) -> None:
        """A new version serves; cooldown, phase and the episode count stay (a give-up ends: another
        version is a fresh start).

        The count used to restart at zero for each version: after v1 -> v2 (healed) -> a rollback to v1
        -> new drift, the new episode got v1's old id, the Jobs API answered "already exists", the old
        episode's outcome (v2) was read back and rolled out again: no training, the rollback undone."""
        self.state.reference_version = reference_version
        self.state.consecutive = 0
        if self.state.phase is Phase.gave_up:
            self.state.phase = Phase.idle
