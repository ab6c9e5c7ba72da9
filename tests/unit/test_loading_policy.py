"""Nothing Foundry loads from storage can execute code, except one integrity-checked file.

Weights go through safetensors, optimizer state through ``torch.load(weights_only=True)``. The one
pickle is the drift-detector suite (alibi-detect's torch detectors hold closures nothing else can
store), read only from a directory ``Registry.fetch`` has verified against the version's manifest.
This test reads the source so that a new ``torch.load`` or ``pickle.load`` cannot slip in unnoticed.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("foundry", "jobs", "serve_apps", "cluster")
# file -> why its unpickling is safe
ALLOWED_PICKLE = {"foundry/drift/detectors.py": "DetectorSuite.load: registry-verified file only"}
PICKLE_CALLS = {"load", "loads", "Unpickler"}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name):
            yield node, node.func.value.id, node.func.attr


def unsafe_loads(rel: str, source: str) -> list[str]:
    """``file:line: call`` for every load in ``source`` that could run code from the file it reads."""
    unsafe = []
    for node, module, attr in _calls(ast.parse(source, filename=rel)):
        if module == "torch" and attr == "load":
            weights_only = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                unsafe.append(f"{rel}:{node.lineno}: torch.load without weights_only=True")
        if module in ("pickle", "cloudpickle", "dill", "joblib") and attr in PICKLE_CALLS \
                and rel not in ALLOWED_PICKLE:
            unsafe.append(f"{rel}:{node.lineno}: {module}.{attr}")
    return unsafe


def test_every_torch_load_is_weights_only_and_pickle_is_only_read_where_verified():
    unsafe = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            unsafe += unsafe_loads(path.relative_to(REPO).as_posix(), path.read_text())
    assert unsafe == []


def test_the_policy_check_catches_what_it_must_refuse():
    """A check that finds nothing proves nothing: it must flag each unsafe form, and only those."""
    source = ("import torch, pickle\n"
              "torch.load('w.pt')\n"
              "torch.load('w.pt', weights_only=False)\n"
              "torch.load('w.pt', weights_only=True)\n"
              "pickle.loads(b'')\n")
    assert unsafe_loads("foundry/x.py", source) == [
        "foundry/x.py:2: torch.load without weights_only=True",
        "foundry/x.py:3: torch.load without weights_only=True",
        "foundry/x.py:5: pickle.loads"]
    assert unsafe_loads("foundry/drift/detectors.py", source)[-1].endswith("weights_only=True")
