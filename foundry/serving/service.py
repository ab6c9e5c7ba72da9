"""The prediction service behind the HTTP app: model holder, batched inference, feedback.

It implements ``app.Backend`` without batching; the Serve deployment reuses it and only routes
``predict`` through ``@serve.batch`` into ``run_batch``. Everything is sized by the config it is
built from (the resolved Hydra config the deployment receives as its argument).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from foundry.config import DataConfig, ServeConfig
from foundry.serving import errors, ledger
from foundry.serving.feedback import FeedbackStore, FeedbackWriter
from foundry.serving.holder import ModelHolder, ModelSpec, SwapOutcome
from foundry.serving.inference import answer_batch
from foundry.serving.metrics import ServingMetrics
from foundry.serving.schema import build_models

log = logging.getLogger(__name__)


class Background:
    """A roll-out's second opinions, off the request path and in bulk.

    The request path only appends (model, rows, ids) to a list; one daemon thread wakes, lingers
    ``linger_s`` to let more requests' rows gather, and predicts each version's rows in ONE call: the
    preprocessor's and torch's fixed costs are paid per gathering, not per request (per request they
    cost a second opinion as much CPU as the answer itself). At most ``max_rows`` rows wait; beyond that
    a batch's second opinion is skipped and counted (the paired tests only lose rows, requests never wait).
    Why a whole second: each gathering holds the GIL for a few milliseconds; once a second, the requests
    that wait behind it are well under 1%, so the champion's p99 does not see it (every 0.25 s it did:
    +9.5% p99 at concurrency 2 in rollout_bench). Labels come later than that anyway.
    """

    def __init__(self, answers: Callable[[dict[str, Any]], None], max_rows: int = 20_000, linger_s: float = 1.0):
        self._answers = answers
        self._max_rows = max_rows
        self._linger_s = linger_s
        self._pending: list[tuple[Any, Any, list[str]]] = []
        self._rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.skipped = 0

    def __call__(self, model, frame, ids: list[str]) -> bool:
        with self._lock:
            if self._rows + len(ids) > self._max_rows:
                self.skipped += len(ids)
                return False
            self._pending.append((model, frame, ids))
            self._rows += len(ids)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="foundry-second-opinions", daemon=True)
                self._thread.start()
        self._wake.set()
        return True

    def _run(self) -> None:
        import pandas as pd

        from foundry.serving.inference import second_opinion

        while True:
            self._wake.wait()
            time.sleep(self._linger_s)
            with self._lock:
                pending, self._pending, self._rows = self._pending, [], 0
                self._wake.clear()
            by_version: dict[str, list] = {}
            for item in pending:
                by_version.setdefault(item[0].version, []).append(item)
            for items in by_version.values():
                try:
                    frame = pd.concat([f for _, f, _ in items], ignore_index=True)
                    second_opinion(items[0][0], frame, [i for _, _, ids in items for i in ids], self._answers)
                except Exception as exc:  # never let the thread die
                    log.warning("second opinions failed: %s: %s", type(exc).__name__, exc)


def configure_torch(threads: int) -> None:
    """Bound intra-op threads: on a small box extra threads only fight the proxy and each other."""
    import torch

    torch.set_num_threads(threads)


class LocalLedger:
    """A ``ledger.LabelLedger`` in this process (standalone server, tests), behind the actor's interface."""

    def __init__(self, serve: ServeConfig, clock=time.time):
        f = serve.feedback
        self.ledger = ledger.LabelLedger(f.window_s, f.max_ids, f.on_repeat.value, clock=clock)

    def answer_sink(self, flush_s: float):
        """In process, answered ids are recorded at once (a test may label right after predicting)."""
        return self

    def add(self, ids: list[str]) -> None:
        self.ledger.answered(ledger.digests(ids))

    async def claim(self, ds) -> list[str]:
        return self.ledger.claim(ds)

    async def release(self, ds) -> None:
        self.ledger.release(ds)


class RemoteLedger:
    """The model's ``ledger.LedgerActor`` (one per model, shared by every replica)."""

    def __init__(self, handle):
        self.handle = handle

    def answer_sink(self, flush_s: float) -> ledger.AnsweredBuffer:
        return ledger.AnsweredBuffer(lambda ds: self.handle.answered.remote(ds), flush_s)

    async def claim(self, ds) -> list[str]:
        return await self.handle.claim.remote(ds)

    async def release(self, ds) -> None:
        await self.handle.release.remote(ds)


def _refusal(ids: list[str], statuses: list[str], window_s: float) -> errors.Rejection:
    """409 when any id already has a label, else 404; the first ids of each kind are named."""
    repeats = [i for i, st in zip(ids, statuses, strict=True) if st == ledger.REPEAT]
    unknown = [i for i, st in zip(ids, statuses, strict=True) if st == ledger.UNKNOWN]
    problems = [{"field": f"labels[{k}].request_id", "type": ("repeated_label" if st == ledger.REPEAT else
                                                              "unknown_request_id"),
                 "message": (f"{i} already has a label" if st == ledger.REPEAT else
                             f"{i} was not answered by this model in the last {window_s:g} s")}
                for k, (i, st) in enumerate(zip(ids, statuses, strict=True)) if st in (ledger.REPEAT, ledger.UNKNOWN)]
    if repeats:
        return errors.Rejection(409, "repeated_label", f"{len(repeats)} request id(s) already have a label (e.g. "
                                f"{repeats[0]}); labels are taken once (serve.feedback.on_repeat); nothing of this "
                                "request was stored", problems[:errors.MAX_PROBLEMS])
    return errors.Rejection(404, "unknown_request_id", f"{len(unknown)} request id(s) were not answered by this "
                            f"model within serve.feedback.window_s (e.g. {unknown[0]}); nothing of this request "
                            "was stored", problems[:errors.MAX_PROBLEMS])


class PredictionService:
    def __init__(self, data: DataConfig, serve: ServeConfig, metrics: ServingMetrics | None = None, sink=None,
                 label_ledger=None):
        """The two sections a replica serves with: ``data`` (the request schema) and ``serve``.
        ``sink``: a ``foundry.drift.sink.MonitorSink`` that hands live traffic to the drift monitor;
        ``label_ledger``: where labels are checked (``RemoteLedger``; default: a ``LocalLedger`` when
        ``serve.feedback.provenance`` is on)."""
        self.data = data
        self.serve = serve
        self.sink = sink
        self.models = build_models(data, serve)
        self.metrics = metrics or ServingMetrics()
        self.device = "cuda" if serve.use_gpu else "cpu"
        self.holder = ModelHolder(data, device=self.device)
        self._feedback: FeedbackWriter | None = None
        self._feedback_root: str | None = None
        self.background = Background(sink.offer_answers) if sink is not None else None
        if label_ledger is None and serve.feedback.provenance:
            label_ledger = LocalLedger(serve)
        self.ledger = label_ledger
        self.answered = (label_ledger.answer_sink(serve.feedback.handover_s)
                         if label_ledger is not None else None)

    # ---- model swaps -----------------------------------------------------------------------------
    def swap(self, spec: ModelSpec) -> SwapOutcome:
        """Blocking (registry I/O and model build): hosts call it off their event loop."""
        outcome = self.holder.swap(spec)
        try:  # the served versions and their training figures; a metrics fault never fails a swap
            self.metrics.serving(self.holder.serving)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not publish the served versions' metrics: %s", exc)
        loaded = self.holder.current
        if loaded is not None and loaded.storage_root != self._feedback_root:
            self._feedback = FeedbackWriter(FeedbackStore(loaded.storage_root, loaded.model, self.data.task),
                                            self.serve.feedback.flush_s)
            self._feedback_root = loaded.storage_root
        return outcome

    # ---- inference -------------------------------------------------------------------------------
    def run_batch(self, requests: Sequence[list[dict[str, Any]]],
                  request_ids: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
        serving = self.holder.require_serving()  # taken once: the batch sees one champion/challenger pair
        sink = self.sink
        out = answer_batch(serving, requests, self.models.feature_names, self.models.clip_bounds,
                           observe=sink.offer if sink is not None else None,
                           answers=sink.offer_answers if sink is not None else None,
                           background=self.background, request_ids=request_ids)
        if self.answered is not None:  # a list append; the ledger hears of them in bulk
            self.answered.add([p["request_id"] for body in out for p in body["predictions"]])
        self.metrics.batch(len(requests), sum(len(r) for r in requests))
        rows_by_version: dict[str, int] = {}  # one metric call per version, not per request (the hot path)
        for body in out:
            rows_by_version[body["model_version"]] = rows_by_version.get(body["model_version"], 0) + len(body["predictions"])
        for version, rows in rows_by_version.items():
            self.metrics.predictions(serving.champion.model, version, rows)
        return out

    # ---- app.Backend -----------------------------------------------------------------------------
    async def predict(self, rows: list[dict[str, Any]], request_id: str | None = None) -> dict[str, Any]:
        return self.run_batch([rows], [request_id])[0]

    async def feedback(self, labels: list[dict[str, Any]]) -> dict[str, Any]:
        """Check the labels' provenance (all or nothing), store them (group commit), then tell the monitor."""
        loaded = self.holder.require()
        ids = [item["request_id"] for item in labels]
        corrections = None
        ds = None
        if self.ledger is not None:
            ds = ledger.digests(ids)
            statuses = await self.ledger.claim(ds)
            if ledger.UNKNOWN in statuses or ledger.REPEAT in statuses:
                raise errors.Refused(_refusal(ids, statuses, self.serve.feedback.window_s))
            corrections = [st == ledger.CORRECTION for st in statuses]
        try:
            await self._feedback.write(labels, loaded.version, corrections)
        except BaseException:
            if ds is not None:  # not stored: a retry must not count as a repeat
                await self.ledger.release(ds)
            raise
        if self.sink is not None:  # stored first: the monitor only needs them for its error stream
            self.sink.offer_labels(ids, [item["label"] for item in labels])
        return {"accepted": len(labels), "model": loaded.model, "corrections": sum(corrections or [])}

    def model_info(self) -> dict[str, Any]:
        info = self.holder.info()
        info["pid"] = os.getpid()
        info["device"] = self.device  # serve.use_gpu: where this replica's models run
        return info

    def health(self) -> tuple[bool, dict[str, Any]]:
        loaded = self.holder.current
        if loaded is None:
            return False, {"status": "loading", "model_version": None}
        return True, {"status": "ok", "model": loaded.model, "model_version": loaded.version}
