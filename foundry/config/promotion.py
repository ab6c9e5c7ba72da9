"""The ``promotion`` section (``conf/config.yaml``): the gate a new version must pass, and its roll-out."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from foundry.config.common import bounded, check_bounds, require


class PromotionPolicy(str, Enum):
    never = "never"  # register only
    always = "always"  # move the alias to every new version
    if_better = "if_better"  # move it only if the new version beats the current one on the same test split


class RolloutMode(str, Enum):
    """How a version that passed the gate reaches users (foundry/rollout/)."""

    direct = "direct"  # it takes 100% at once (then the post-rollout guard watches it)
    shadow = "shadow"  # it answers a copy of live traffic; users only see the champion's answers
    canary = "canary"  # a hash-chosen fraction of requests, stepped up as live evidence accrues


@dataclass
class LiveRolloutConfig:
    """The live decision (foundry/rollout/paired.py): anytime-valid paired tests on labelled live rows.

    Losses are bounded per row (classification: half the Brier score; regression: the squared error in
    units of ``regression_scale_sd`` label standard deviations, capped at 1), so the tests are exact."""

    confidence: float = bounded(0.95, ge=0.5, lt=1)  # each test's error bound: a truly better challenger is rolled back w.p. <= 5%
    min_effect: float = bounded(0.0, ge=0, lt=1)  # relative loss reduction the challenger must show to take 100%
    non_inferiority_margin: float = bounded(0.02, ge=0, lt=1)  # a canary steps up once it is shown no worse than this (relative)
    rollback_margin: float = bounded(0.0, ge=0, lt=1)  # rolled back once shown worse than the champion by more than this
    canary_steps: list[float] = field(default_factory=lambda: [0.05, 0.25, 1.0])
    min_rows_per_step: int = bounded(100, ge=1)  # labelled rows at each canary step before the next one
    max_labelled_rows: int = bounded(5000, ge=1)  # undecided after this many labelled rows: the champion stays
    max_seconds: float = 3600.0  # undecided after this long: the champion stays
    guard: bool = True  # after any version takes 100%, the previous one shadows it until it is shown no worse
    guard_rows: int = bounded(2000, ge=1)  # labelled rows after which a guard that saw no harm ends
    max_error_rate: float = bounded(0.01, ge=0, lt=1)  # the challenger's failed predictions (it falls back to the champion)
    max_latency_ratio: float = bounded(3.0, ge=1)  # challenger p99 compute time / champion's
    min_health_rows: int = bounded(200, ge=1)  # answered rows before latency and errors are judged
    bets: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.4, 0.8])
    regression_scale_sd: float = bounded(3.0, gt=0)
    poll_s: float = 2.0  # how often the monitor looks at the candidate alias

    def validate(self) -> None:
        check_bounds(self, "promotion.live")
        steps = list(self.canary_steps)
        require(bool(steps) and all(0 < a < b for a, b in zip(steps, steps[1:], strict=False)) and steps[0] > 0
                and steps[-1] == 1.0, "promotion.live.canary_steps",
                f"must increase strictly from above 0 and end at 1.0, got {steps}")
        require(all(0 < b < 1 for b in self.bets) and bool(self.bets), "promotion.live.bets",
                "must be fractions in (0, 1) of the largest safe bet")
        require(self.max_seconds > 0 and self.poll_s > 0, "promotion.live.max_seconds", "max_seconds and poll_s must be > 0")


@dataclass
class PromotionConfig:
    """The promotion gate (foundry/train/gate.py): a paired bootstrap on per-row losses; then the
    roll-out (``rollout``): how the version that passed reaches users, decided on live labels."""

    policy: PromotionPolicy = PromotionPolicy.if_better
    alias: str = "production"
    min_improvement: float = 0.0  # required relative loss reduction (lower confidence bound), 0.01 = 1%
    confidence: float = bounded(0.95, ge=0.5, lt=1)
    bootstrap_samples: int = bounded(2000, ge=100)
    gate_seed: int = 0
    max_accuracy_drop: float = bounded(0.0, ge=0, le=1)  # classification: the challenger's accuracy may not drop by more
    max_forgetting: float | None = None  # relative loss increase allowed on the champion's reference sample
    rollout: RolloutMode = RolloutMode.direct
    candidate_alias: str = "candidate"  # where a gate-passed version waits for its shadow/canary roll-out
    live: LiveRolloutConfig = field(default_factory=LiveRolloutConfig)

    def validate(self) -> None:
        check_bounds(self, "promotion")
        require(0 <= self.min_improvement <= 1, "promotion.min_improvement",
                "must be in [0, 1] (a relative reduction of the loss: 0.01 = 1% lower)")
        require(self.max_forgetting is None or self.max_forgetting >= 0, "promotion.max_forgetting", "must be >= 0 or null")
        require(self.candidate_alias != self.alias, "promotion.candidate_alias", f"must differ from promotion.alias ({self.alias})")
        self.live.validate()
