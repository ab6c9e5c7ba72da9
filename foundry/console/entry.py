"""Shared behaviour of every entry point: expected failures exit non-zero with one clear message."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from foundry.errors import FoundryError

T = TypeVar("T")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_or_exit(fn: Callable[[], T]) -> T:
    """Run ``fn``; a FoundryError becomes ``error: <message>`` on stderr and its exit code (no traceback)."""
    try:
        return fn()
    except FoundryError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
