"""The prediction service behind the HTTP app: model holder, batched inference, feedback.

It implements ``app.Backend`` without batching; the Serve deployment reuses it and only routes
``predict`` through ``@serve.batch`` into ``run_batch``. Everything is sized by the config it is
built from (the resolved Hydra config the deployment receives as its argument).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from foundry.config import FoundryConfig
from foundry.serving.feedback import FeedbackStore
from foundry.serving.holder import ModelHolder, ModelSpec, SwapOutcome
from foundry.serving.inference import answer_batch
from foundry.serving.metrics import ServingMetrics
from foundry.serving.schema import build_models

log = logging.getLogger(__name__)


class Background:
    """The roll-out's second opinions, off the request path: one worker thread and at most
    ``max_pending`` batches waiting; beyond that a batch's second opinion is skipped and counted (the
    paired test only loses rows, requests never wait)."""

    def __init__(self, max_pending: int = 16):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="foundry-shadow")
        self._slots = threading.BoundedSemaphore(max_pending)
        self.skipped = 0

    def __call__(self, work: Callable[[], None]) -> bool:
        if not self._slots.acquire(blocking=False):
            self.skipped += 1
            return False

        def run() -> None:
            try:
                work()
            except Exception as exc:
                log.warning("background prediction failed: %s: %s", type(exc).__name__, exc)
            finally:
                self._slots.release()

        self._pool.submit(run)
        return True


def configure_torch(threads: int) -> None:
    """Bound intra-op threads: on a small box extra threads only fight the proxy and each other."""
    import torch

    torch.set_num_threads(threads)


class PredictionService:
    def __init__(self, cfg: FoundryConfig, metrics: ServingMetrics | None = None, sink=None):
        """``sink``: a ``foundry.drift.sink.MonitorSink`` that hands live traffic to the drift monitor."""
        self.cfg = cfg
        self.sink = sink
        self.models = build_models(cfg.data, cfg.serve)
        self.metrics = metrics or ServingMetrics()
        self.device = "cuda" if cfg.serve.use_gpu else "cpu"
        self.holder = ModelHolder(cfg.data, device=self.device)
        self._feedback: FeedbackStore | None = None
        self._feedback_root: str | None = None
        self.background = Background()

    # ---- model swaps -----------------------------------------------------------------------------
    def swap(self, spec: ModelSpec) -> SwapOutcome:
        """Blocking (registry I/O and model build): hosts call it off their event loop."""
        outcome = self.holder.swap(spec)
        loaded = self.holder.current
        if loaded is not None and loaded.storage_root != self._feedback_root:
            self._feedback = FeedbackStore(loaded.storage_root, loaded.model, self.cfg.data.task)
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
        self.metrics.batch(len(requests), sum(len(r) for r in requests))
        for body in out:
            self.metrics.predictions(body["model"], body["model_version"], len(body["predictions"]))
        return out

    # ---- app.Backend -----------------------------------------------------------------------------
    async def predict(self, rows: list[dict[str, Any]], request_id: str | None = None) -> dict[str, Any]:
        return self.run_batch([rows], [request_id])[0]

    async def feedback(self, labels: list[dict[str, Any]]) -> dict[str, Any]:
        loaded = self.holder.require()
        store = self._feedback
        await asyncio.to_thread(store.write, labels, loaded.version)
        if self.sink is not None:  # stored first: the monitor only needs them for its error stream
            self.sink.offer_labels([item["request_id"] for item in labels], [item["label"] for item in labels])
        return {"accepted": len(labels), "model": loaded.model}

    def model_info(self) -> dict[str, Any]:
        info = self.holder.info()
        info["pid"] = os.getpid()
        return info

    def health(self) -> tuple[bool, dict[str, Any]]:
        loaded = self.holder.current
        if loaded is None:
            return False, {"status": "loading", "model_version": None}
        return True, {"status": "ok", "model": loaded.model, "model_version": loaded.version}
