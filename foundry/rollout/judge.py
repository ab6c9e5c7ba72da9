"""Both versions' answers and the labels, met row by row; the challenger's health.

During a roll-out every replica sends the monitor, for each batch and each version that predicted it,
an *answers* chunk (``foundry.serving.inference.answer_columns``): request ids, the version, its scores,
whether the user got that answer (``served``), the model's compute seconds, and whether it failed. A
label (``POST /feedback``) that finds both versions' answers for its request id becomes one paired row
of losses (``row_losses``) for ``paired.PairedTests``; answers and labels wait for each other in
bounded maps (the oldest are forgotten first), since a background answer can reach the monitor after
its label.

Health: per version, rows answered, rows failed and the compute time of each batch it answered users
with (second opinions are computed in bulk, so their time compares with nothing). A challenger that
fails (its requests fell back to the champion) or, in a canary, is slower than the champion answering
the same kind of requests, is rolled back whatever its accuracy.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from foundry.config import LiveRolloutConfig, Task
from foundry.rollout.paired import PairedTests

MAX_PENDING = 200_000  # answers (and early labels) waiting for their partner


def row_losses(task: Task, scores: np.ndarray, labels: list[Any], classes: list[str] | None,
               scale: float) -> np.ndarray:
    """A proper loss per row in [0, 1]: half the Brier score of the class probabilities, or the squared
    error in units of ``scale`` capped at 1 (bounded losses keep the betting tests exact)."""
    if task is Task.regression:
        err = (np.asarray(labels, dtype=np.float64) - scores[:, 0].astype(np.float64)) / scale
        return np.minimum(err * err, 1.0)
    index = {c: i for i, c in enumerate(classes or [])}
    y = np.asarray([index.get(str(v), -1) for v in labels])
    p = scores.astype(np.float64)
    p_true = np.where(y >= 0, p[np.arange(len(y)), np.clip(y, 0, None)], 0.0)
    return np.clip(0.5 * ((p * p).sum(axis=1) - 2 * p_true + 1), 0.0, 1.0)


@dataclass
class Health:
    answered: int = 0
    failed: int = 0
    served: int = 0  # rows whose answer went to the user
    seconds: deque = field(default_factory=lambda: deque(maxlen=5000))  # compute time per batch

    def p99(self) -> float | None:
        return float(np.quantile(np.asarray(self.seconds), 0.99)) if len(self.seconds) >= 20 else None

    def to_dict(self) -> dict[str, Any]:
        attempts = self.answered + self.failed
        p99 = self.p99()
        return {"answered": self.answered, "failed": self.failed, "served": self.served,
                "error_rate": round(self.failed / attempts, 5) if attempts else None,
                "p99_compute_ms": None if p99 is None else round(p99 * 1000, 3)}


class Judge:
    def __init__(self, cfg: LiveRolloutConfig, task: Task, classes: list[str] | None, scale: float,
                 champion: str, challenger: str, tests: PairedTests | None = None):
        self.cfg = cfg
        self.task = task
        self.classes = list(classes or [])
        self.scale = scale
        self.champion = champion
        self.challenger = challenger
        self.tests = tests or PairedTests(cfg)
        self.health = {champion: Health(), challenger: Health()}
        self._answers: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        self._labels: OrderedDict[str, Any] = OrderedDict()

    # ---- input ---------------------------------------------------------------------------------------
    def add_answers(self, chunk: dict[str, Any]) -> None:
        ids = chunk["request_id"]
        versions = chunk["model_version"]
        scores = np.asarray(chunk["scores"], dtype=np.float32).reshape(len(ids), -1)
        failed = np.asarray(chunk["failed"], dtype=bool)
        served = np.asarray(chunk["served"], dtype=bool)
        seconds = np.asarray(chunk["seconds"], dtype=np.float64)
        batch_start = np.asarray(chunk.get("batch_start", np.ones(len(ids), dtype=bool)), dtype=bool)
        ready_ids, ready_labels = [], []
        for i, rid in enumerate(ids):
            v = str(versions[i])
            h = self.health.get(v)
            if h is None:  # another roll-out's late answer
                continue
            if batch_start[i] and served[i]:  # only answers users waited for: like with like
                h.seconds.append(float(seconds[i]))
            if failed[i]:
                h.failed += 1
                continue
            h.answered += 1
            h.served += int(served[i])
            slot = self._answers.setdefault(str(rid), {})
            slot[v] = scores[i]
            if len(slot) == 2 and rid in self._labels:
                ready_ids.append(str(rid))
                ready_labels.append(self._labels.pop(rid))
        self._trim()
        self._score(ready_ids, ready_labels)

    def add_labels(self, request_ids: list[str], labels: list[Any]) -> int:
        """Labels for rows of this roll-out; returns how many became paired rows now."""
        ready_ids, ready_labels = [], []
        for rid, label in zip(request_ids, labels, strict=True):
            rid = str(rid)
            slot = self._answers.get(rid)
            if slot is not None and len(slot) == 2:
                ready_ids.append(rid)
                ready_labels.append(label)
            else:
                self._labels[rid] = label
        self._trim()
        return self._score(ready_ids, ready_labels)

    def _score(self, ids: list[str], labels: list[Any]) -> int:
        if not ids:
            return 0
        slots = [self._answers.pop(rid) for rid in ids]
        champ = np.stack([s[self.champion] for s in slots])
        chall = np.stack([s[self.challenger] for s in slots])
        self.tests.update(row_losses(self.task, champ, labels, self.classes, self.scale),
                          row_losses(self.task, chall, labels, self.classes, self.scale))
        return len(ids)

    def _trim(self) -> None:
        for pending in (self._answers, self._labels):
            while len(pending) > MAX_PENDING:
                pending.popitem(last=False)

    # ---- verdicts ------------------------------------------------------------------------------------
    def unhealthy(self) -> str | None:
        """Why the challenger must go whatever its accuracy (None: healthy, or too few rows to say)."""
        c, k = self.health[self.champion], self.health[self.challenger]
        attempts = k.answered + k.failed
        if attempts < self.cfg.min_health_rows:
            return None
        if k.failed / attempts > self.cfg.max_error_rate:
            return (f"{k.failed} of {attempts} challenger predictions failed "
                    f"(> promotion.live.max_error_rate={self.cfg.max_error_rate})")
        pc, pk = c.p99(), k.p99()
        if pc and pk and pk / pc > self.cfg.max_latency_ratio:
            return (f"challenger p99 compute time {pk * 1000:.1f} ms is {pk / pc:.1f}x the champion's "
                    f"{pc * 1000:.1f} ms (> promotion.live.max_latency_ratio={self.cfg.max_latency_ratio})")
        return None

    def summary(self) -> dict[str, Any]:
        served = sum(h.served for h in self.health.values())
        return {**self.tests.summary(), "health": {v: h.to_dict() for v, h in self.health.items()},
                "challenger_served_share": round(self.health[self.challenger].served / served, 4) if served else None,
                "pending_answers": len(self._answers), "pending_labels": len(self._labels)}

    def health_dict(self) -> dict[str, Any]:
        return {v: {"answered": h.answered, "failed": h.failed, "served": h.served} for v, h in self.health.items()}

    def restore_health(self, raw: dict[str, Any] | None) -> None:
        for v, counts in (raw or {}).items():
            if v in self.health:
                h = self.health[v]
                h.answered, h.failed, h.served = counts["answered"], counts["failed"], counts["served"]
