"""The ``promotion`` section (``conf/config.yaml``): the gate a new version must pass, and its roll-out."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from foundry.config.common import require


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

    confidence: float = 0.95  # each test's error bound: a truly better challenger is rolled back w.p. <= 5%
    min_effect: float = 0.0  # relative loss reduction the challenger must show to take 100%
    non_inferiority_margin: float = 0.02  # a canary steps up once it is shown no worse than this (relative)
    rollback_margin: float = 0.0  # rolled back once shown worse than the champion by more than this
    canary_steps: list[float] = field(default_factory=lambda: [0.05, 0.25, 1.0])
    min_rows_per_step: int = 100  # labelled rows at each canary step before the next one
    max_labelled_rows: int = 5000  # undecided after this many labelled rows: the champion stays
    max_seconds: float = 3600.0  # undecided after this long: the champion stays
    guard: bool = True  # after any version takes 100%, the previous one shadows it until it is shown no worse
    guard_rows: int = 2000  # labelled rows after which a guard that saw no harm ends
    max_error_rate: float = 0.01  # the challenger's failed predictions (it falls back to the champion)
    max_latency_ratio: float = 3.0  # challenger p99 compute time / champion's
    min_health_rows: int = 200  # answered rows before latency and errors are judged
    bets: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.4, 0.8])
    regression_scale_sd: float = 3.0
    poll_s: float = 2.0  # how often the monitor looks at the candidate alias

    def validate(self) -> None:
        require(0.5 <= self.confidence < 1, "promotion.live.confidence", "must be in [0.5, 1)")
        for key in ("min_effect", "non_inferiority_margin", "rollback_margin"):
            require(0 <= getattr(self, key) < 1, f"promotion.live.{key}", f"must be in [0, 1), got {getattr(self, key)}")
        steps = list(self.canary_steps)
        require(bool(steps) and all(0 < a < b for a, b in zip(steps, steps[1:], strict=False)) and steps[0] > 0
                and steps[-1] == 1.0, "promotion.live.canary_steps",
                f"must increase strictly from above 0 and end at 1.0, got {steps}")
        require(all(0 < b < 1 for b in self.bets) and bool(self.bets), "promotion.live.bets",
                "must be fractions in (0, 1) of the largest safe bet")
        for key in ("min_rows_per_step", "max_labelled_rows", "guard_rows", "min_health_rows"):
            require(getattr(self, key) >= 1, f"promotion.live.{key}", f"must be >= 1, got {getattr(self, key)}")
        require(self.max_seconds > 0 and self.poll_s > 0, "promotion.live.max_seconds", "max_seconds and poll_s must be > 0")
        require(0 <= self.max_error_rate < 1, "promotion.live.max_error_rate", "must be in [0, 1)")
        require(self.max_latency_ratio >= 1, "promotion.live.max_latency_ratio", "must be >= 1")
        require(self.regression_scale_sd > 0, "promotion.live.regression_scale_sd", "must be > 0")


@dataclass
class PromotionConfig:
    """The promotion gate (foundry/train/gate.py): a paired bootstrap on per-row losses; then the
    roll-out (``rollout``): how the version that passed reaches users, decided on live labels."""

    policy: PromotionPolicy = PromotionPolicy.if_better
    alias: str = "production"
    min_improvement: float = 0.0  # required relative loss reduction (lower confidence bound), 0.01 = 1%
    confidence: float = 0.95
    bootstrap_samples: int = 2000
    gate_seed: int = 0
    max_accuracy_drop: float = 0.0  # classification: the challenger's accuracy may not drop by more
    max_forgetting: float | None = None  # relative loss increase allowed on the champion's reference sample
    rollout: RolloutMode = RolloutMode.direct
    candidate_alias: str = "candidate"  # where a gate-passed version waits for its shadow/canary roll-out
    live: LiveRolloutConfig = field(default_factory=LiveRolloutConfig)

    def validate(self) -> None:
        require(0 <= self.min_improvement <= 1, "promotion.min_improvement",
                "must be in [0, 1] (a relative reduction of the loss: 0.01 = 1% lower)")
        require(0.5 <= self.confidence < 1, "promotion.confidence", "must be in [0.5, 1)")
        require(self.bootstrap_samples >= 100, "promotion.bootstrap_samples", "must be >= 100")
        require(0 <= self.max_accuracy_drop <= 1, "promotion.max_accuracy_drop", "must be in [0, 1]")
        require(self.max_forgetting is None or self.max_forgetting >= 0, "promotion.max_forgetting", "must be >= 0 or null")
        require(self.candidate_alias != self.alias, "promotion.candidate_alias", f"must differ from promotion.alias ({self.alias})")
        self.live.validate()
