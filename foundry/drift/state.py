"""The monitor's persisted state: ``<storage.monitoring>/<model>/state.json``, rewritten atomically.

What is in it is ``DriftMonitor``'s business (``DriftMonitor._state``: the controller, the reference
version, the new normal in use, the onset, counters, the last results and the last loop error); this
module only reads and writes the file. An unreadable file starts the monitor fresh (said in the log);
episode numbers still never go back, because the monitor resumes them from its events.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from foundry import storage
from foundry.config import StorageConfig

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


def state_uri(storage_root: str, model: str) -> str:
    return storage.join(storage.normalize(StorageConfig(root=storage_root).monitoring), model, STATE_FILE)


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


__all__ = ["STATE_FILE", "StateFile", "encode", "state_uri"]
