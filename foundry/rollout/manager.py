"""A roll-out's life in the drift monitor: start, canary steps, promotion, rollback, the guard.

The monitor holds the labels, so it decides. A roll-out starts when ``promotion.candidate_alias``
points at a version that is not the champion and was never decided (a retrain job or ``python -m
foundry.registry promote`` moved it under ``promotion.rollout=shadow|canary``), or right after the
monitor's own retrain episode registered it. Serve is pointed at champion + challenger in place
(``control.set_rollout``: both stay loaded in every replica), and each round the ``Judge``'s live
evidence decides:

- the challenger is unhealthy (failing, slow) or shown worse: **rolled back** (Serve back to the
  champion alone; the candidate is remembered as decided);
- canary: shown no worse after ``min_rows_per_step`` labelled rows at a step: the next step; the last
  step (100%) needs it shown better. Shadow: shown better. Then **promoted**: the production alias is
  moved by compare-and-set (expected: the champion), Serve serves the challenger, the monitor re-bases;
- undecided after ``max_labelled_rows`` or ``max_seconds``: **expired**, the champion stays.

The **guard** (``promotion.live.guard``) follows every version that takes 100%, a direct promotion
included: the previous version shadows it, and if the new one is shown worse it is rolled back in
place (alias compare-and-set, Serve, re-base) and the drift alarm's evidence starts afresh, so the
same drift opens no new episode until new rows show it again. Shown no worse (or ``guard_rows``
labelled rows without harm): the guard ends and the previous version is unloaded.

With ``promotion.rollout=direct`` a candidate is promoted at once (alias, Serve) and guarded. A roll-out
whose Serve arrangement was changed by someone else (a version it did not put there answers live rows:
a swap or rollback by hand) is **abandoned**, never fought: Serve is left as it is and the monitor then
follows the served version as it does for any hand-made swap.

What each decision does is in ``foundry.rollout.outcomes``. I/O (registry, Serve) runs without the
monitor's lock; state changes happen under it (``locked``). The state (``to_dict``) is saved in the
monitor's ``state.json``; answers waiting for their labels are not (a restarted monitor pairs the rows
answered after it started).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from foundry.config import RolloutMode, ServeConfig, Task
from foundry.drift.events import iso
from foundry.drift.monitor_config import MonitorSections
from foundry.rollout.decision import decide
from foundry.rollout.judge import Judge
from foundry.rollout.outcomes import RolloutOutcomes
from foundry.rollout.paired import PairedTests

log = logging.getLogger(__name__)
DECIDED_KEPT = 50
ABANDON_AFTER_ROWS = 20


def apply_to_serve(serve: ServeConfig, version: str, challenger: str | None, mode: str | None,
                   fraction: float) -> None:
    from foundry.serving import control

    control.set_rollout(serve.app_name, version, challenger, mode, fraction)


def preflight(cfg: MonitorSections, version: str) -> None:
    from foundry.serving import control

    control.preflight(cfg.storage.root, cfg.model_name, version, cfg.data)


class Rollouts(RolloutOutcomes):
    """The monitor's roll-out state machine: at most one roll-out or guard at a time (``active``), the
    candidates already decided (never tried again from the alias) and the last outcomes (``history``).
    What each decision does (promote, step up, roll back...) is ``RolloutOutcomes`` (``outcomes``)."""

    def __init__(self, cfg: MonitorSections, *, locked: Callable[[], AbstractContextManager[None]],
                 say: Callable[..., None], champion: Callable[[], str], reference: Callable[[], Any],
                 rebase_to: Callable[[str], None], fresh_evidence: Callable[[], None],
                 saved: dict[str, Any] | None = None, apply: Callable[..., None] | None = None,
                 check: Callable[[MonitorSections, str], None] | None = None, metrics: Callable[[], Any] | None = None,
                 registry: Any = None, hold: Callable[[], bool] = lambda: False):
        self.cfg = cfg
        self.live = cfg.promotion.live
        self._locked = locked
        self._say = say
        self._champion = champion  # the version the monitor watches (Serve's champion)
        self._reference = reference  # its Reference (classes, label scale)
        self._rebase_to = rebase_to  # the monitor re-bases on a version (I/O: call without the lock)
        self._fresh_evidence = fresh_evidence  # the drift alarm starts afresh (under the lock)
        self._serve_apply = apply or (lambda *a: apply_to_serve(cfg.serve, *a))
        self._applied_at = time.time()  # rows answered after this show what Serve does now
        self._unexpected = 0  # rows since then answered by a version this roll-out did not put there
        self._abandon: str | None = None
        self._check = check or preflight
        self._metrics = metrics or (lambda: None)
        self._registry = registry
        self._hold = hold  # a retrain job is in flight: its outcome (Episodes) starts its roll-out, not the alias
        saved = saved or {}
        self.active: dict[str, Any] | None = saved.get("active")
        self.decided: list[str] = list(saved.get("decided", []))
        self.history: list[dict[str, Any]] = list(saved.get("history", []))[-20:]
        self.judge: Judge | None = None
        self._looked_at = float("-inf")
        if self.active:
            self.judge = self._new_judge(self.active["champion"], self.active["challenger"], self.active.get("tests"))
            self.judge.restore_health(self.active.get("health"))

    # ---- inputs (the round's thread, under the monitor's lock) -------------------------------------------
    def add_answers(self, chunk: dict[str, Any]) -> None:
        if self.judge is not None:
            self.judge.add_answers(chunk)

    def add_labels(self, request_ids: list[str], labels: list[Any]) -> None:
        if self.judge is not None:
            self.judge.add_labels(request_ids, labels)

    def observe_served(self, versions, received_at) -> None:
        """Which versions answered live rows: one this roll-out did not put there (a swap or rollback made by
        hand, ``serve_apps.deploy``) means Serve is no longer ours: the roll-out is abandoned, not fought."""
        a = self.active
        if a is None or self._abandon:
            return
        expected = {a["challenger"]} if a["kind"] == "guard" else {a["champion"]} | (
            {a["challenger"]} if a["mode"] == "canary" else set())
        late = np.asarray(received_at, dtype=np.float64) > self._applied_at + 1.0
        other = [str(v) for v, ok in zip(versions, late, strict=True) if ok and str(v) not in expected]
        self._unexpected += len(other)
        if self._unexpected >= ABANDON_AFTER_ROWS:
            self._abandon = (f"Serve answered {self._unexpected} rows with {sorted(set(other))}, which this "
                             f"{a['kind']} did not put there (a change made by hand)")

    @property
    def busy(self) -> bool:
        """A roll-out or guard is on: Serve answers with two versions, the monitor must not follow either."""
        return self.active is not None

    # ---- what others read ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.cfg.promotion.rollout.value, "active": None,
                               "history": self.history[-5:]}
        if self.active:
            a = self.active
            out["active"] = {k: a[k] for k in ("kind", "mode", "champion", "challenger", "fraction", "step",
                                                "started", "steps")}
            out["active"]["answers"] = a["challenger"] if a["kind"] == "guard" else a["champion"]
            out["active"]["evidence"] = self.judge.summary() if self.judge else None
        return out

    def to_dict(self) -> dict[str, Any]:
        active = None
        if self.active:
            active = {**self.active, "tests": self.judge.tests.to_dict() if self.judge else None,
                      "health": self.judge.health_dict() if self.judge else None}
        return {"active": active, "decided": self.decided[-DECIDED_KEPT:], "history": self.history[-20:]}

    # ---- the round (without the monitor's lock) -------------------------------------------------------
    def round(self, now: float) -> None:
        if self.active is None:
            if now - self._looked_at >= self.live.poll_s and not self._hold():
                self._looked_at = now
                candidate = self._candidate()
                if candidate is not None:
                    self.begin(candidate, now)
            return
        if self._abandon:
            self._give_up_to_hand()
            return
        verdict = decide(self.active, self.judge, self.live, now)
        if verdict is None:
            return
        action, reason = verdict
        {"rollback": self._roll_back, "step": self._step_up, "promote": self._promote,
         "guard_passed": self._guard_passed, "expired": self._expire}[action](reason, now)

    def _candidate(self) -> str | None:
        try:
            version = self._reg().alias(self.cfg.model_name, self.cfg.promotion.candidate_alias)
        except Exception as exc:
            log.warning("cannot read the %s alias: %s", self.cfg.promotion.candidate_alias, exc)
            return None
        if version is None or version in self.decided or version == self._champion():
            return None
        return version

    def begin(self, challenger: str, now: float) -> None:
        """Start the roll-out of ``challenger`` against the champion Serve answers with: shadow or canary,
        or (``direct``) its promotion at once, watched by the guard."""
        mode = self.cfg.promotion.rollout
        if self.active is not None:
            return
        champion = self._champion()
        if mode is RolloutMode.direct:
            try:
                self._check(self.cfg, challenger)
            except Exception as exc:
                with self._locked():
                    self.decided.append(challenger)
                self._say("rollout_failed", f"cannot roll out {challenger}: {type(exc).__name__}: {exc}; {champion} "
                          "keeps serving", challenger=challenger, champion=champion, mode=mode.value)
                return
            with self._locked():
                self._activate("rollout", mode.value, champion, challenger, [1.0], now)
            self._promote("a direct roll-out (promotion.rollout=direct)", now)
            return
        steps = list(self.live.canary_steps) if mode is RolloutMode.canary else [0.0]
        try:
            self._check(self.cfg, challenger)
            self._apply(champion, challenger, mode.value, steps[0])
        except Exception as exc:
            with self._locked():
                self.decided.append(challenger)
            self._say("rollout_failed", f"cannot start the {mode.value} roll-out of {challenger}: "
                      f"{type(exc).__name__}: {exc}; {champion} keeps serving", challenger=challenger,
                      champion=champion, mode=mode.value)
            return
        with self._locked():
            self._activate("rollout", mode.value, champion, challenger, steps, now)
        share = f"{steps[0]:.0%} of requests" if mode is RolloutMode.canary else "a copy of every request (shadow)"
        self._say("rollout_started", f"{mode.value} roll-out of {challenger} against {champion}: it answers {share}",
                  challenger=challenger, champion=champion, mode=mode.value, fraction=steps[0], steps=steps)
        self._count("rollout_started")
        self._gauge()

    def start_guard(self, new: str, previous: str, now: float, applied: bool = False) -> None:
        """After ``new`` took 100% from ``previous`` (any mode): ``previous`` shadows it until it is shown
        no worse; shown worse, it is rolled back. ``applied``: Serve already has both."""
        if not self.live.guard or new == previous:
            return
        try:
            if not applied:
                self._apply(new, previous, "shadow", 0.0)
        except Exception as exc:
            self._say("rollout_failed", f"cannot start the guard of {new} ({previous} shadowing): "
                      f"{type(exc).__name__}: {exc}", challenger=previous, champion=new, mode="guard")
            return
        with self._locked():
            # The new version is on trial (the judge's challenger) although it answers: "worse" rolls it back.
            self._activate("guard", "shadow", previous, new, [0.0], now)
        self._say("guard_started", f"guarding {new}: {previous} shadows it until live labels show {new} no worse "
                  f"(or {self.live.guard_rows} labelled rows pass); shown worse, it is rolled back",
                  version=new, previous=previous)
        self._count("guard_started")
        self._gauge()

    # ---- helpers -----------------------------------------------------------------------------------------
    def _move_alias(self, to: str, expected: str, reason: str) -> str | None:
        """Compare-and-set the production alias; the conflict's message if another writer moved it."""
        from foundry.errors import AliasConflictError

        try:
            self._reg().set_alias(self.cfg.model_name, self.cfg.promotion.alias, to, expected=expected, reason=reason)
        except AliasConflictError as exc:
            return str(exc)
        return None

    def _apply(self, version: str, challenger: str | None, mode: str | None, fraction: float) -> None:
        self._serve_apply(version, challenger, mode, fraction)
        self._applied_at = time.time()
        self._unexpected = 0

    def _activate(self, kind: str, mode: str, champion: str, challenger: str, steps: list[float], now: float) -> None:
        self.active = {"kind": kind, "mode": mode, "champion": champion, "challenger": challenger, "steps": steps,
                       "step": 0, "fraction": steps[0], "started_at": now, "started": iso(now), "step_rows": 0,
                       "step_at": now}
        self.judge = self._new_judge(champion, challenger, None)

    def _finish(self, outcome: str, reason: str, evidence: dict) -> None:
        a = self.active
        if a["challenger"] not in self.decided:  # never tried again from the candidate alias
            self.decided.append(a["challenger"])
        self.history.append({"kind": a["kind"], "mode": a["mode"], "champion": a["champion"],
                             "challenger": a["challenger"], "outcome": outcome, "reason": reason,
                             "labelled_rows": evidence.get("labelled_rows"),
                             "challenger_served_share": evidence.get("challenger_served_share"),
                             "at": iso(time.time())})
        self.active = None
        self.judge = None
        self._abandon = None
        self._unexpected = 0
        self._gauge()

    def _new_judge(self, champion: str, challenger: str, tests: dict | None) -> Judge:
        ref = self._reference()
        task = self.cfg.data.task
        classes = list(ref.predictor.preprocessor.classes or []) if task is not Task.regression else None
        scale = 1.0
        if task is Task.regression and ref.sample is not None and self.cfg.data.label in ref.sample:
            sd = float(np.nanstd(ref.sample[self.cfg.data.label].to_numpy(dtype=np.float64)))
            scale = self.live.regression_scale_sd * (sd if sd > 0 else 1.0)
        return Judge(self.live, task, classes, scale, champion, challenger, PairedTests.from_dict(self.live, tests))

    def _reg(self):
        if self._registry is None:
            from foundry.drift import reference

            self._registry = reference.registry(self.cfg.storage)
        return self._registry

    def _gauge(self) -> None:
        m = self._metrics()
        if m:
            a = self.active
            canary = a is not None and a["kind"] == "rollout" and a["mode"] == "canary"
            m.rollout_fraction(a["fraction"] if canary else 0.0)

    def _count(self, decision: str) -> None:
        m = self._metrics()
        if m:
            m.rollout_decision(decision)
