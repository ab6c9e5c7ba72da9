"""A queue bounded by rows, not items: what a monitor holds for its next round stays flat under any load.

``reserve(n)`` says how many of ``n`` offered rows fit (the caller samples that many and counts the
rest); the room is given back by ``done(rows)`` once a round has absorbed them, so the bound covers
rows waiting *and* rows being absorbed. Never blocks: a flooded monitor drops, it does not wait.
"""

from __future__ import annotations

import collections
import threading
from typing import Any


class RowQueue:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.rows = 0  # reserved: queued or being absorbed
        self._items: collections.deque = collections.deque()
        self._lock = threading.Lock()

    def reserve(self, n: int) -> int:
        """Room for up to ``n`` rows, taken now; the caller must ``put`` what it reserved."""
        with self._lock:
            take = max(0, min(n, self.capacity - self.rows))
            self.rows += take
            return take

    def put(self, item: Any) -> None:
        self._items.append(item)  # deque appends and pops are atomic

    def get(self) -> Any | None:
        try:
            return self._items.popleft()
        except IndexError:
            return None

    def done(self, n: int) -> None:
        with self._lock:
            self.rows = max(0, self.rows - n)
