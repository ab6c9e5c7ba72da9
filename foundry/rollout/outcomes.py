"""What a roll-out does once the live evidence has decided: step up, promote, roll back, expire, end
the guard, or give way to a change made by hand.

``decide`` (``foundry.rollout.decision``) says which; these carry it out, each in the same order: the I/O
first (the registry's compare-and-set alias move, pointing Serve with ``_apply``), without the monitor's
lock, then the state change under it (``_locked``, ``_finish``), then the event (``_say``) and the metric
(``_count``). A step that fails on Serve changes nothing and is tried again next round.

A mixin of ``Rollouts`` (``foundry.rollout.manager``), kept apart so the state machine (what is active,
when a roll-out starts) and its outcomes read separately; it uses the manager's state (``active``,
``judge``, ``live``, ``cfg``) and helpers (``_apply``, ``_move_alias``, ``_finish``, ``_say``, ``_count``,
``_gauge``, ``_rebase_to``, ``_fresh_evidence``, ``_abandon``) and ``start_guard``.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("foundry.rollout.manager")  # the roll-out's log, wherever its code lives


class RolloutOutcomes:
    """The outcome actions of ``Rollouts``, called from its ``round`` (and ``begin``) without the lock."""

    def _step_up(self, reason: str, now: float) -> None:
        a = self.active
        step = a["step"] + 1
        fraction = a["steps"][step]
        started = time.perf_counter()
        try:
            self._apply(a["champion"], a["challenger"], a["mode"], fraction)
        except Exception as exc:
            log.warning("canary step to %s failed (%s); tried again next round", fraction, exc)
            return
        with self._locked():
            a.update(step=step, fraction=fraction, step_rows=self.judge.tests.n, step_at=now)
        self._say("rollout_step", f"canary of {a['challenger']} steps up to {fraction:.0%}: {reason}",
                  challenger=a["challenger"], champion=a["champion"], fraction=fraction, step=step,
                  evidence=self.judge.summary(), apply_s=round(time.perf_counter() - started, 2))
        self._count("rollout_step")
        self._gauge()

    def _promote(self, reason: str, now: float) -> None:
        a = self.active
        new, old = a["challenger"], a["champion"]
        evidence = self.judge.summary()
        conflict = self._move_alias(new, old, f"won its {a['mode']} roll-out: {reason}")
        if conflict:
            self._end("rollout_failed", f"{new} won its roll-out but {self.cfg.promotion.alias} moved meanwhile "
                      f"({conflict}); {old} keeps serving", new, old, evidence, back_to=old)
            return
        with self._locked():
            self._finish("promoted", reason, evidence)
        self._say("rollout_promoted", f"{new} is the new {self.cfg.promotion.alias} after its {a['mode']} roll-out: "
                  f"{reason}", version=new, previous=old, mode=a["mode"], evidence=evidence)
        self._count("promoted")
        guard = self.live.guard
        started = time.perf_counter()
        try:  # with the guard, the old champion stays loaded and shadows: the replicas only swap roles
            self._apply(new, old if guard else None, "shadow" if guard else None, 0.0)
        except Exception as exc:
            self._say("rollout_failed", f"could not point Serve at {new}: {exc}", version=new)
            return
        self._say("rolled_out", f"Serve app {self.cfg.serve.app_name!r} answers every request with {new} (in place)",
                  version=new, seconds=round(time.perf_counter() - started, 2), mode=a["mode"])
        self._rebase_to(new)
        if guard:
            self.start_guard(new, old, now, applied=True)

    def _roll_back(self, reason: str, now: float) -> None:
        a = self.active
        if a["kind"] == "guard":
            self._guard_rollback(reason, now)
            return
        self._end("rolled_back", f"{a['challenger']} rolled back, {a['champion']} keeps serving: {reason}",
                  a["challenger"], a["champion"], self.judge.summary(), back_to=a["champion"])

    def _expire(self, reason: str, now: float) -> None:
        a = self.active
        self._end("rollout_expired", f"{a['challenger']} not promoted, {a['champion']} stays: {reason}",
                  a["challenger"], a["champion"], self.judge.summary(), back_to=a["champion"])

    def _end(self, kind: str, message: str, challenger: str, champion: str, evidence: dict, back_to: str) -> None:
        """A candidate's roll-out is over without promotion: Serve back to ``back_to`` alone."""
        try:
            self._apply(back_to, None, None, 0.0)
        except Exception as exc:
            log.warning("could not drop the challenger from Serve (%s); tried again next round", exc)
            return
        with self._locked():
            self._finish(kind, message, evidence)
            self._fresh_evidence()
        self._say(kind, message, challenger=challenger, champion=champion, evidence=evidence)
        self._count(kind)

    def _guard_rollback(self, reason: str, now: float) -> None:
        a = self.active
        new, previous = a["challenger"], a["champion"]
        evidence = self.judge.summary()
        conflict = self._move_alias(previous, new, f"rolled back by the post-rollout guard: {reason}")
        if conflict:
            with self._locked():
                self._finish("guard_ended", conflict, evidence)
            self._say("guard_ended", f"guard of {new} ended: {self.cfg.promotion.alias} was moved by another "
                      f"writer ({conflict})", version=new)
            return
        try:
            self._apply(previous, None, None, 0.0)
        except Exception as exc:
            log.warning("guard rollback: Serve not yet pointed at %s (%s); alias moved", previous, exc)
        with self._locked():
            self._finish("rolled_back", reason, evidence)
        self._rebase_to(previous)
        with self._locked():
            self._fresh_evidence()
        self._say("rolled_back", f"{new} rolled back to {previous} by the post-rollout guard: {reason}; the drift "
                  "alarm starts afresh (no new episode for this drift until new rows show it)",
                  version=new, previous=previous, evidence=evidence, guard=True)
        self._count("rolled_back")

    def _guard_passed(self, reason: str, now: float) -> None:
        a = self.active
        new, previous = a["challenger"], a["champion"]
        try:
            self._apply(new, None, None, 0.0)
        except Exception as exc:
            log.warning("could not unload %s after the guard (%s); tried again next round", previous, exc)
            return
        evidence = self.judge.summary()
        with self._locked():
            self._finish("guard_passed", reason, evidence)
        self._say("guard_passed", f"{new} passed its guard against {previous}: {reason}",
                  version=new, previous=previous, evidence=evidence)
        self._count("guard_passed")

    def _give_up_to_hand(self) -> None:
        a, reason = self.active, self._abandon
        evidence = self.judge.summary()
        with self._locked():
            self._finish("rollout_abandoned", reason, evidence)
        self._say("rollout_abandoned", f"the {a['kind']} of {a['challenger']} is abandoned: {reason}; Serve is left as "
                  "it is", challenger=a["challenger"], champion=a["champion"], evidence=evidence)
        self._count("rollout_abandoned")
