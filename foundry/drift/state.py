"""The monitor's state: the lock that guards it in memory, and ``state.json`` that keeps it on storage.

``StateLock``: the monitor's state changes only under its lock, which is never held across I/O; an
event said while it is held (``say``) is queued and written once the outermost section releases it.

``<storage.monitoring>/<model>/state.json``, rewritten atomically: what is in it is ``DriftMonitor``'s
business (``DriftMonitor._save_state``: the controller, the reference version, the new normal in use,
the onset, counters, the last results and the last loop error); this module only reads and writes the
file. An unreadable file starts the monitor fresh (said in the log); episode numbers still never go
back, because the monitor resumes them from its events.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from foundry import storage
from foundry.storage.layout import MONITOR_STATE_FILE, StorageLayout

log = logging.getLogger(__name__)

STATE_FILE = MONITOR_STATE_FILE


class StateLock:
    """``lock`` guards the state; ``locked()`` holds it to change state, ``say`` writes an event (after
    the lock, if it is held). Only the thread running a round enters ``locked()`` and calls ``say``."""

    def __init__(self, write: Callable[..., Any]):
        self.lock = threading.RLock()
        self._write = write  # EventLog.write
        self._held = 0  # depth of locked() sections
        self._outbox: list[tuple[str, str, dict]] = []  # events said under the lock, written after it

    @contextmanager
    def locked(self) -> Iterator[None]:
        outbox: list[tuple[str, str, dict]] = []
        try:
            with self.lock:
                self._held += 1
                try:
                    yield
                finally:
                    self._held -= 1
                    if not self._held:
                        outbox, self._outbox = self._outbox, []
        finally:
            for kind, message, fields in outbox:
                self._write(kind, message, **fields)

    def say(self, kind: str, message: str, **fields: Any) -> None:
        if self._held:
            self._outbox.append((kind, message, fields))
        else:
            self._write(kind, message, **fields)


def state_uri(storage_root: str, model: str) -> str:
    return StorageLayout(storage_root).monitor_state(model)


class StateFile:
    def __init__(self, storage_root: str, model: str):
        self.fs, self.path = storage.resolve(state_uri(storage_root, model))

    def read(self) -> dict[str, Any]:
        if not storage.exists(self.fs, self.path):
            return {}
        try:
            return json.loads(storage.read_bytes(self.fs, self.path))
        except ValueError as exc:
            log.error("unreadable monitor state %s (%s); starting fresh", self.path, exc)
            return {}

    def write(self, data: bytes) -> None:
        storage.write_bytes_atomic(self.fs, self.path, data)


def encode(state: dict[str, Any]) -> bytes:
    """The file's bytes: taken under the monitor's lock (a consistent snapshot), written after it."""
    return json.dumps(state, default=str).encode()


__all__ = ["STATE_FILE", "StateFile", "StateLock", "encode", "state_uri"]
