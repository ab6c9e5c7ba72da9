"""The prediction service behind the HTTP app: model holder, batched inference, feedback.

It implements ``app.Backend`` without batching; the Serve deployment reuses it and only routes
``predict`` through ``@serve.batch`` into ``run_batch``. Everything is sized by the config it is
built from (the resolved Hydra config the deployment receives as its argument).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from foundry.config import FoundryConfig
from foundry.serving.feedback import FeedbackStore
from foundry.serving.holder import ModelHolder, ModelSpec, SwapOutcome
from foundry.serving.inference import predict_batch
from foundry.serving.metrics import ServingMetrics
from foundry.serving.schema import build_models


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
    def run_batch(self, requests: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        loaded = self.holder.require()  # taken once: the whole batch is answered by this version
        out = predict_batch(loaded, requests, self.models.feature_names, self.models.clip_bounds,
                            observe=self.sink.offer if self.sink is not None else None)
        rows = sum(len(r) for r in requests)
        self.metrics.batch(len(requests), rows)
        self.metrics.predictions(loaded.model, loaded.version, rows)
        return out

    # ---- app.Backend -----------------------------------------------------------------------------
    async def predict(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return self.run_batch([rows])[0]

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
