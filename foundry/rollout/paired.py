"""Anytime-valid paired tests of a challenger against the champion on labelled live rows.

Every labelled row carries both versions' losses (both answer every row during a roll-out: one for
the user, the other in the background), each bounded in [0, 1] (``judge.row_losses``). Three one-sided
tests run on the paired rows, each an e-process (a test by betting, Shafer & Vovk; Waudby-Smith &
Ramdas 2023): for a null ``E[x] <= 0`` on a variable ``x >= -L`` the wealth ``prod_i (1 + lam x_i)``
with ``0 <= lam < 1/L`` is a nonnegative supermartingale under the null, an average of such wealths
over a grid of bets is one too, and by Ville's inequality it ever reaches ``1/alpha`` with probability
at most ``alpha``. So the tests can be looked at after every label, for as long as the roll-out lasts,
without inflating their errors (a fixed-sample test looked at repeatedly would).

- ``better``: ``x = (1 - min_effect) l_champ - l_chall``: the challenger's loss is lower by the
  relative ``min_effect`` (rejecting the null promotes it);
- ``not_worse``: ``x = (1 + margin) l_champ - l_chall``: it is no worse by more than the
  non-inferiority margin (a canary steps up; a post-rollout guard passes);
- ``worse``: ``x = l_chall - (1 + rollback_margin) l_champ``: it is worse (it is rolled back). A
  challenger that is truly no worse is rolled back with probability at most ``1 - confidence``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from foundry.config import LiveRolloutConfig

TESTS = ("better", "not_worse", "worse")


@dataclass
class BettingTest:
    """H0: E[x] <= 0 for x >= -lower; ``log_e`` is the log of the mixture wealth (the e-value)."""

    lams: np.ndarray
    log_wealth: np.ndarray

    @classmethod
    def new(cls, bets: list[float], lower: float) -> BettingTest:
        lams = np.asarray(bets, dtype=np.float64) / lower
        return cls(lams, np.zeros_like(lams))

    def update(self, x: np.ndarray) -> None:
        self.log_wealth += np.log1p(self.lams[:, None] * x[None, :]).sum(axis=1)

    @property
    def log_e(self) -> float:
        top = float(self.log_wealth.max())
        return top + math.log(float(np.exp(self.log_wealth - top).mean()))


@dataclass
class PairedTests:
    cfg: LiveRolloutConfig
    n: int = 0
    loss_champion: float = 0.0  # sums
    loss_challenger: float = 0.0
    tests: dict[str, BettingTest] = field(default_factory=dict)
    shown_at: dict[str, int] = field(default_factory=dict)  # labelled rows when each test first rejected

    def __post_init__(self) -> None:
        if not self.tests:
            bets = list(self.cfg.bets)
            self.tests = {"better": BettingTest.new(bets, 1.0), "not_worse": BettingTest.new(bets, 1.0),
                          "worse": BettingTest.new(bets, 1.0 + self.cfg.rollback_margin)}

    @property
    def threshold(self) -> float:
        """log(1/alpha): a test whose log e-value reaches it rejects its null."""
        return math.log(1.0 / (1.0 - self.cfg.confidence))

    def update(self, champion: np.ndarray, challenger: np.ndarray) -> None:
        """Add paired rows (each loss in [0, 1])."""
        lc = np.clip(np.asarray(champion, dtype=np.float64), 0.0, 1.0)
        lk = np.clip(np.asarray(challenger, dtype=np.float64), 0.0, 1.0)
        if not len(lc):
            return
        c = self.cfg
        self.tests["better"].update((1 - c.min_effect) * lc - lk)
        self.tests["not_worse"].update((1 + c.non_inferiority_margin) * lc - lk)
        self.tests["worse"].update(lk - (1 + c.rollback_margin) * lc)
        self.n += len(lc)
        self.loss_champion += float(lc.sum())
        self.loss_challenger += float(lk.sum())
        for name in TESTS:
            if name not in self.shown_at and self.shown(name):
                self.shown_at[name] = self.n

    def shown(self, test: str) -> bool:
        return self.tests[test].log_e >= self.threshold

    def summary(self) -> dict[str, Any]:
        """What /model, events and ``foundry status`` show."""
        n = max(self.n, 1)
        lc, lk = self.loss_champion / n, self.loss_challenger / n
        return {"labelled_rows": self.n, "loss_champion": round(lc, 5), "loss_challenger": round(lk, 5),
                "relative_loss_reduction": round((lc - lk) / lc, 4) if self.n and lc > 0 else None,
                "log_e": {k: round(t.log_e, 3) for k, t in self.tests.items()},
                "threshold": round(self.threshold, 3), "shown": [k for k in TESTS if self.shown(k)],
                "shown_at_rows": dict(self.shown_at)}

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "loss_champion": self.loss_champion, "loss_challenger": self.loss_challenger,
                "shown_at": self.shown_at,
                "log_wealth": {k: t.log_wealth.tolist() for k, t in self.tests.items()}}

    @classmethod
    def from_dict(cls, cfg: LiveRolloutConfig, raw: dict[str, Any] | None) -> PairedTests:
        out = cls(cfg)
        if not raw:
            return out
        saved = raw.get("log_wealth") or {}
        if all(len(saved.get(k, ())) == len(t.lams) for k, t in out.tests.items()):
            for k, t in out.tests.items():
                t.log_wealth = np.asarray(saved[k], dtype=np.float64)
            out.n, out.loss_champion, out.loss_challenger = raw["n"], raw["loss_champion"], raw["loss_challenger"]
            out.shown_at = dict(raw.get("shown_at") or {})
        return out
