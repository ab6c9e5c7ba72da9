"""What a fresh interpreter has imported after running a snippet: for tests that keep heavy imports off a
path (a training worker's start, the monitor's CLI)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def modules_after(code: str) -> set[str]:
    """The names in ``sys.modules`` of a new ``python -c`` process (run from the repo root) after ``code``."""
    out = subprocess.run([sys.executable, "-c", f"{code}; import sys; print(' '.join(sys.modules))"],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())
