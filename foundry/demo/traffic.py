"""Live traffic for demos, tests and benchmarks: rows of a drift scenario sent over real HTTP.

Each request carries ``rows_per_request`` rows of the bundled data set's ``scenario`` to
``POST /predict``; the true labels of the answered rows go to ``POST /feedback`` (by request id),
as a business would send them once the outcome is known. Every request's outcome is recorded
(status, latency, served version, correctness or absolute error), so a caller can tell how many
requests failed, what accuracy (or error) users saw, and when the served version changed; and every
label /feedback refused is counted with its reason (``TrafficLog.labels_refused``, ``label_errors``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import numpy as np
import pandas as pd

from foundry.datasets import generate

logger = logging.getLogger(__name__)

LABEL_COLUMNS = ("churned", "customer_id", "segment", "lifetime_value")
# What a client with ``retries`` tries again (after a short pause): no answer at all (a connection
# error, status 0), the gateway/overload statuses, and 500, which is what Serve's proxy answers when
# the replica holding the request dies mid-flight (ActorDiedError). Retrying is safe because
# /predict has no side effects; a 4xx is the client's own fault and never retried.
RETRY_STATUSES = (500, 502, 503, 504)


@dataclass
class RequestRecord:
    at: float
    phase: str
    status: int
    latency_s: float
    rows: int
    version: str | None = None
    correct: int = 0  # rows whose prediction equals the true label (classification)
    abs_error: float | None = None  # sum over the rows of |prediction - true value| (regression)
    error: str | None = None
    attempts: int = 1  # > 1: answered (or given up) after retries
    first_failure: str | None = None  # what the first of those retried attempts got ("500: ...")


@dataclass
class TrafficLog:
    records: list[RequestRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    labels_sent: int = 0
    labels_refused: int = 0  # labels /feedback did not store (an answer other than 200, or none)
    label_errors: list[str] = field(default_factory=list)  # the first few reasons, as /feedback gave them

    def add(self, record: RequestRecord) -> None:
        with self.lock:
            self.records.append(record)

    def labels_posted(self, count: int, error: str | None) -> None:
        with self.lock:
            self.labels_sent += count
            if error is not None:
                self.labels_refused += count
                if len(self.label_errors) < 5:
                    self.label_errors.append(error)

    def failed(self) -> list[RequestRecord]:
        return [r for r in self.records if r.status != 200]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([r.__dict__ for r in self.records])


def label_values(column: pd.Series) -> list:
    """A label column as /feedback takes it: JSON's own types (a number for a regression target, a string
    or an integer for a class; null for a missing one). Strings for every task would be refused for a
    regression model (422: "expected a number")."""
    return json.loads(column.to_json(orient="values"))


def scenario_rows(scenario: str, rows: int, seed: int, label: str = "churned") -> Iterator[tuple[list[dict], list]]:
    """(feature rows as the API takes them, their labels), ``rows`` of them from ``scenario``."""
    frame = generate("churn", scenario, rows, seed=seed)
    labels = frame[label].astype(str).tolist()
    features = json.loads(frame.drop(columns=list(LABEL_COLUMNS)).to_json(orient="records"))
    yield features, labels


class LateLabels:
    """Labels a business sends late: each request's labels are posted ``delay_rows`` answered rows and
    ``delay_s`` seconds after its predictions (whichever comes later); ``flush`` posts the rest."""

    def __init__(self, post, delay_rows: int = 0, delay_s: float = 0.0):
        self.post = post
        self.delay_rows = delay_rows
        self.delay_s = delay_s
        self.waiting: deque = deque()  # (rows answered when due, time due, labels payload)
        self.answered = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="late-labels", daemon=True) if delay_s else None
        if self._thread:
            self._thread.start()

    def add(self, rows: int, payload: list[dict]) -> None:
        with self.lock:
            self.answered += rows
            self.waiting.append((self.answered + self.delay_rows, time.monotonic() + self.delay_s, payload))
        self._release()

    def _release(self, everything: bool = False) -> None:
        while True:
            with self.lock:
                if not self.waiting:
                    return
                rows_due, time_due, payload = self.waiting[0]
                if not everything and (rows_due > self.answered or time_due > time.monotonic()):
                    return
                self.waiting.popleft()
            self.post(payload)

    def _run(self) -> None:
        while not self._stop.wait(min(self.delay_s, 0.2)):
            self._release()

    def flush(self) -> None:
        self._stop.set()
        self._release(everything=True)


class LabelPoster:
    """Labels go to /feedback from a thread of their own, gathered for ``gather_s`` into requests of at
    most ``max_labels``, the way a business sends them: /feedback answers once its labels are stored
    (a group commit, ``serve.feedback.flush_s``), so posting inline would throttle the predictions."""

    def __init__(self, post, gather_s: float = 0.25, max_labels: int = 500):
        self.post = post
        self.gather_s = gather_s
        self.max_labels = max_labels
        self.pending: list[dict] = []
        self.lock = threading.Lock()
        self._sending = threading.Lock()  # held while a batch is on its way, so that flush() waits for it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="label-poster", daemon=True)
        self._thread.start()

    def add(self, labels: list[dict]) -> None:
        with self.lock:
            self.pending.extend(labels)

    def _send(self) -> None:
        with self._sending:
            while True:
                with self.lock:
                    batch, self.pending = self.pending[:self.max_labels], self.pending[self.max_labels:]
                if not batch:
                    return
                self.post(batch)

    def _run(self) -> None:
        while not self._stop.wait(self.gather_s):
            self._send()

    def flush(self) -> None:
        """Post every label added so far, and return once they are answered."""
        self._send()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._send()


class TrafficGenerator:
    def __init__(self, url: str, api_key: str, rows_per_request: int = 20, concurrency: int = 4,
                 feedback: bool = True, timeout_s: float = 30.0, retries: int = 0, label_delay_rows: int = 0,
                 label_delay_s: float = 0.0):
        self.url = url.rstrip("/")
        self.headers = {"X-API-Key": api_key}
        self.rows_per_request = rows_per_request
        self.concurrency = concurrency
        self.feedback = feedback
        self.retries = retries
        self.client = httpx.Client(timeout=timeout_s, limits=httpx.Limits(max_connections=concurrency * 2))
        self.log = TrafficLog()
        # Labels arrive label_delay_rows answered rows / label_delay_s seconds after their predictions
        # (0: at once, as a demo would send them; a real business learns the outcome later).
        self.poster = LabelPoster(self._post_labels) if feedback else None
        self.late = LateLabels(self.poster.add, label_delay_rows, label_delay_s) \
            if feedback and (label_delay_rows or label_delay_s) else None

    def close(self) -> None:
        if self.late is not None:
            self.late.flush()
        if self.poster is not None:
            self.poster.close()
        self.client.close()

    def flush_labels(self) -> None:
        """Post the labels of every answered request now (late labels still wait for their time), and return
        once /feedback answered them: the log's label counts are then complete."""
        if self.poster is not None:
            self.poster.flush()

    def _post_labels(self, labels: list[dict]) -> None:
        # Best effort: the prediction already counted; a lost label only thins the error stream. But a
        # refused one is counted and its reason kept (TrafficLog.labels_refused, label_errors), and the
        # first is logged: labels of the wrong type never reach the monitor, which then cannot see a
        # concept drift at all.
        try:
            r = self.client.post(f"{self.url}/feedback", json={"labels": labels}, headers=self.headers)
            error = None if r.status_code == 200 else f"{r.status_code}: {r.text[:300]}"
        except httpx.HTTPError as exc:
            error = f"no answer: {type(exc).__name__}: {exc}"
        if error is not None and not self.log.label_errors:
            logger.warning("/feedback refused %d label(s): %s", len(labels), error)
        self.log.labels_posted(len(labels), error)

    def _one(self, phase: str, rows: list[dict], labels: list) -> None:
        started = time.perf_counter()
        attempt, first_failure = 0, None
        while True:
            try:
                r = self.client.post(f"{self.url}/predict", json={"rows": rows}, headers=self.headers)
                status, body, error = r.status_code, (r.json() if r.status_code == 200 else None), \
                    (None if r.status_code == 200 else r.text[:200])
            except httpx.HTTPError as exc:
                status, body, error = 0, None, f"{type(exc).__name__}: {exc}"
            if status == 200 or attempt >= self.retries or (status and status not in RETRY_STATUSES):
                break
            if first_failure is None:
                first_failure = f"{status}: {error}"
            attempt += 1
            time.sleep(0.2 * attempt)
        latency = time.perf_counter() - started
        record = RequestRecord(time.time(), phase, status, latency, len(rows), error=error,
                               attempts=attempt + 1, first_failure=first_failure)
        if body is not None:
            preds = body["predictions"]
            record.version = body["model_version"]
            record.correct = sum(str(p["prediction"]) == str(y) for p, y in zip(preds, labels, strict=True))
            if all(_is_number(p["prediction"]) and _is_number(y) for p, y in zip(preds, labels, strict=True)):
                record.abs_error = float(sum(abs(p["prediction"] - y) for p, y in zip(preds, labels, strict=True)))
            if self.feedback:
                fb = [{"request_id": p["request_id"], "label": y} for p, y in zip(preds, labels, strict=True)]
                if self.late is not None:
                    self.late.add(len(rows), fb)
                else:
                    self.poster.add(fb)
        self.log.add(record)

    def send(self, scenario: str, rows: int, seed: int, phase: str | None = None,
             rate_rows_per_s: float | None = None) -> TrafficLog:
        """Send ``rows`` rows of the bundled data set's ``scenario``; returns the (shared) log."""
        for features, labels in scenario_rows(scenario, rows, seed):
            self.send_rows(features, labels, phase or scenario, rate_rows_per_s)
        return self.log

    def send_frame(self, frame: pd.DataFrame, label: str, phase: str, features: list[str] | None = None,
                   rate_rows_per_s: float | None = None) -> TrafficLog:
        """Send the rows of any data set (``features`` columns, default all but ``label``), with the
        ``label`` column's values as their true labels; returns the (shared) log."""
        columns = features or [c for c in frame.columns if c != label]
        rows = json.loads(frame[columns].to_json(orient="records"))
        return self.send_rows(rows, label_values(frame[label]), phase, rate_rows_per_s)

    def send_rows(self, features: list[dict], labels: list, phase: str,
                  rate_rows_per_s: float | None = None) -> TrafficLog:
        """Send feature rows ``rows_per_request`` at a time (paced when a rate is given); blocks until
        all are answered."""
        chunks = [(features[i:i + self.rows_per_request], labels[i:i + self.rows_per_request])
                  for i in range(0, len(features), self.rows_per_request)]
        interval = (self.rows_per_request / rate_rows_per_s) if rate_rows_per_s else 0.0
        with ThreadPoolExecutor(self.concurrency) as pool:
            start = time.perf_counter()
            futures = []
            for i, (rows_, labels_) in enumerate(chunks):
                if interval:
                    delay = start + i * interval - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                futures.append(pool.submit(self._one, phase, rows_, labels_))
            for f in futures:
                f.result()
        return self.log


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def mean_abs_error(records: list[RequestRecord]) -> float:
    """Mean absolute error over the answered rows of a regression model's traffic (NaN when none)."""
    ok = [r for r in records if r.status == 200 and r.abs_error is not None]
    rows = sum(r.rows for r in ok)
    return float(np.nan) if rows == 0 else sum(r.abs_error for r in ok) / rows


def accuracy(records: list[RequestRecord]) -> float:
    ok = [r for r in records if r.status == 200]
    rows = sum(r.rows for r in ok)
    return float(np.nan) if rows == 0 else sum(r.correct for r in ok) / rows
