"""When to retrain: the monitor's decision logic, free of Ray, storage and wall clocks.

Every method takes ``now`` (seconds, any monotonic-enough clock) and returns a ``Decision``; the
monitor performs it (submit a job, write an event). The state is a plain dataclass that the monitor
persists after every change, so a restarted monitor continues exactly where it stopped: it never
submits a second job for an episode it already submitted (the submission id is derived from the
state, and the Jobs API refuses a duplicate id), and it keeps honouring cooldown and backoff.

Phases::

    idle --(votes in `consecutive` rounds)--> running(episode e, attempt 1)
    running --promoted/rejected--> cooldown --(cooldown_s)--> idle
    running --failed, attempt <= max_retries--> backoff --(backoff_s * factor**(attempt-1))--> running(attempt+1)
    running --failed, no retries left--> cooldown (event: retries_exhausted)
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


class Action(str, Enum):
    none = "none"
    submit = "submit"  # submit the retrain job with Decision.submission_id
    exhausted = "exhausted"  # the episode's retries are used up (an event, then cooldown)
    finished = "finished"  # the episode ended (promoted or rejected); cooldown starts


@dataclass
class ControllerState:
    phase: Phase = Phase.idle
    episode: int = 0  # episodes this model's monitor started: never reset, so an episode id is never reused
    attempt: int = 0
    reference_version: str = ""
    submission_id: str | None = None
    submitted_at: float | None = None
    wait_until: float = 0.0  # end of backoff or cooldown
    consecutive: int = 0  # test rounds in a row with enough votes

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

    def _submit(self, now: float, reason: str) -> Decision:
        s = self.state
        s.phase = Phase.running
        s.submission_id = submission_id(self.model, s.reference_version, s.episode, s.attempt)
        s.submitted_at = now
        return Decision(Action.submit, reason, s.submission_id, self.current_episode_id, s.attempt)

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
        if s.phase is Phase.cooldown:
            return Decision(Action.none, f"cooling down until {s.wait_until:.0f}")
        s.episode += 1
        s.attempt = 1
        return self._submit(now, f"drift in {s.consecutive} rounds in a row")

    def _end_cooldown(self, now: float) -> None:
        s = self.state
        if s.phase is Phase.cooldown and now >= s.wait_until:
            s.phase = Phase.idle
            s.consecutive = 0  # a new episode needs fresh evidence gathered after the cooldown

    def tick(self, now: float) -> Decision:
        """Time passing: ends cooldowns, and resubmits a failed episode once its backoff is over."""
        s = self.state
        self._end_cooldown(now)
        if s.phase is Phase.backoff and now >= s.wait_until:
            s.attempt += 1
            return self._submit(now, f"retry {s.attempt - 1} of {self.cfg.max_retries}")
        return Decision(Action.none, s.phase.value)

    def job_finished(self, outcome: str, now: float, detail: str = "") -> Decision:
        """``outcome``: promoted | rejected (the job succeeded) | failed (it did not, or timed out)."""
        s = self.state
        if s.phase is not Phase.running:
            return Decision(Action.none, f"no job running (phase {s.phase.value})")
        ep = self.current_episode_id
        attempt = s.attempt
        s.submission_id = None
        s.submitted_at = None
        if outcome in ("promoted", "rejected"):
            s.phase = Phase.cooldown
            s.wait_until = now + self.cfg.cooldown_s
            return Decision(Action.finished, f"{outcome}: {detail}".rstrip(": "), episode_id=ep, attempt=attempt,
                            detail={"outcome": outcome})
        if attempt <= self.cfg.max_retries:
            delay = self.cfg.backoff_s * self.cfg.backoff_factor ** (attempt - 1)
            s.phase = Phase.backoff
            s.wait_until = now + delay
            return Decision(Action.none, f"attempt {attempt} failed ({detail}); retrying in {delay:.0f} s",
                            episode_id=ep, attempt=attempt, detail={"retry_in_s": delay})
        s.phase = Phase.cooldown
        s.wait_until = now + self.cfg.cooldown_s
        return Decision(Action.exhausted, f"attempt {attempt} failed ({detail}); {self.cfg.max_retries} retries "
                        "used up", episode_id=ep, attempt=attempt)

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
        else:
            s.phase = Phase.backoff
            s.attempt -= 1
            s.wait_until = 0.0

    def rebase(self, reference_version: str) -> None:
        """A new version serves; cooldown, phase and the episode count stay.

        The count used to restart at zero for each version: after v1 -> v2 (healed) -> a rollback to v1
        -> new drift, the new episode got v1's old id, the Jobs API answered "already exists", the old
        episode's outcome (v2) was read back and rolled out again: no training, the rollback undone."""
        self.state.reference_version = reference_version
        self.state.consecutive = 0
