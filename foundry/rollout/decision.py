"""What a roll-out does next, from its state and the judge's evidence: a pure function.

Why apart from ``manager``: the rule is the product (when a canary steps up, when it wins, when it is
rolled back), and it reads best without the registry, Serve and locking around it, the way
``foundry.drift.controller`` decides retrains for the monitor.

The judge's roles are the same in a roll-out and in a guard: ``challenger`` is the version on trial (in
a guard the new version, which answers users), ``champion`` the one it must not be worse than.

1. unhealthy (failing, or slower in a canary): ``rollback``, whatever the accuracy;
2. shown worse: ``rollback``;
3. a guard: shown no worse, or ``guard_rows`` labelled rows without harm: ``guard_passed``;
4. shadow, or a canary's last step before 100%: shown better after ``min_rows_per_step`` rows at this
   step: ``promote``; an earlier canary step: shown no worse: ``step``;
5. undecided after ``max_labelled_rows`` or ``max_seconds``: ``expired`` (the champion stays).
"""

from __future__ import annotations

from typing import Any

from foundry.config import LiveRolloutConfig
from foundry.rollout.judge import Judge


def numbers(judge: Judge) -> str:
    s = judge.tests.summary()
    return (f"{s['labelled_rows']} labelled rows, loss {s['loss_challenger']} vs {s['loss_champion']} "
            f"(challenger vs champion), log e-values {s['log_e']} against {s['threshold']}")


def decide(active: dict[str, Any], judge: Judge, live: LiveRolloutConfig, now: float) -> tuple[str, str] | None:
    """(action, reason) with action in rollback | guard_passed | promote | step | expired; None: wait."""
    a, t = active, judge.tests
    unhealthy = judge.unhealthy()
    if unhealthy:
        return "rollback", f"{a['challenger']} is unhealthy: {unhealthy}"
    if t.shown("worse"):
        return "rollback", f"live labels show {a['challenger']} worse than {a['champion']} ({numbers(judge)})"
    if a["kind"] == "guard":
        if t.shown("not_worse"):
            return "guard_passed", f"live labels show it no worse ({numbers(judge)})"
        if t.n >= live.guard_rows:
            return "guard_passed", f"{t.n} labelled rows without harm ({numbers(judge)})"
        return None
    at_step = t.n - a["step_rows"]
    last = a["mode"] == "shadow" or a["step"] + 1 >= len(a["steps"]) - 1
    if last and t.shown("better") and at_step >= live.min_rows_per_step:
        return "promote", f"live labels show it better ({numbers(judge)})"
    if not last and t.shown("not_worse") and at_step >= live.min_rows_per_step:
        return "step", f"live labels show it no worse ({numbers(judge)})"
    if t.n >= live.max_labelled_rows or now - a["started_at"] >= live.max_seconds:
        return "expired", (f"undecided after {t.n} labelled rows and {now - a['started_at']:.0f} s "
                           f"(promotion.live.max_labelled_rows / max_seconds): {numbers(judge)}")
    return None
