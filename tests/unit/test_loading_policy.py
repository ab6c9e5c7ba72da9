"""Nothing Foundry loads from storage can execute code: no module unpickles anything.

Weights go through safetensors, optimizer state through ``torch.load(weights_only=True)``, the
preprocessor and model specs through JSON, and the drift detectors are stored as data (JSON and
safetensors, ``foundry.drift.detector_store``): loading rebuilds them, nothing is unpickled. This
test reads the source so that a new unpickling load cannot slip in unnoticed, whatever name it is
imported under (``import pickle as p``, ``from pickle import loads``, ``import numpy as np``).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("foundry", "jobs", "serve_apps", "cluster")

# Unpickling, however it is spelled: any use of these is refused (called, aliased or subclassed).
UNPICKLING = {
    *(f"{m}.{f}" for m in ("pickle", "_pickle", "cloudpickle", "dill") for f in ("load", "loads", "Unpickler")),
    "joblib.load", "pandas.read_pickle", "shelve.open", "shelve.DbfilenameShelf",
    "numpy.load", "torch.load",  # unless called with allow_pickle=False / weights_only=True (below)
}
# Loads that are safe only with this keyword set to this constant (numpy's default is already safe).
SAFE_WITH = {"numpy.load": ("allow_pickle", False, True), "torch.load": ("weights_only", True, False)}
POSITIONAL = {"numpy.load": 2}  # np.load(file, mmap_mode, allow_pickle, ...): allow_pickle can be positional


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> the dotted name it was imported as (``p`` -> ``pickle``, ``loads`` -> ``pickle.loads``)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    names[a.asname] = a.name
                else:
                    top = a.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(node: ast.AST, names: dict[str, str]) -> str | None:
    """``np.load`` -> ``numpy.load`` through the file's imports; None for anything not a plain name chain."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([names.get(node.id, node.id), *reversed(parts)])


def _safe_call(name: str, call: ast.Call) -> bool:
    keyword, safe_value, default_safe = SAFE_WITH[name]
    if any(k.arg is None for k in call.keywords):  # **kwargs: cannot tell
        return False
    value = next((k.value for k in call.keywords if k.arg == keyword), None)
    position = POSITIONAL.get(name)
    if value is None and position is not None and len(call.args) > position:
        value = call.args[position]
    if value is None:
        return default_safe and not any(isinstance(a, ast.Starred) for a in call.args)
    return isinstance(value, ast.Constant) and value.value is safe_value


def unsafe_loads(rel: str, source: str) -> list[str]:
    """``file:line: name`` for every use in ``source`` of a load that could run code from what it reads."""
    tree = ast.parse(source, filename=rel)
    names = _aliases(tree)
    calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    unsafe = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Name, ast.Attribute)) or isinstance(node.ctx, ast.Store):
            continue
        name = _dotted(node, names)
        if name not in UNPICKLING:
            continue
        call = calls.get(id(node))
        if name in SAFE_WITH:
            if call is not None and _safe_call(name, call):
                continue
            keyword, value, _ = SAFE_WITH[name]
            unsafe.append(f"{rel}:{node.lineno}: {name} without {keyword}={value}")
        else:
            unsafe.append(f"{rel}:{node.lineno}: {name}")
    return sorted(set(unsafe), key=lambda s: (int(s.split(":")[1]), s))


def test_no_module_unpickles_and_every_load_is_safe():
    unsafe = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            unsafe += unsafe_loads(path.relative_to(REPO).as_posix(), path.read_text())
    assert unsafe == []


def test_the_policy_check_catches_what_it_must_refuse():
    """A check that finds nothing proves nothing: it must flag each unsafe form, and only those."""
    source = ("import torch, pickle\n"
              "import pickle as p\n"
              "import numpy as np, numpy, pandas as pd, dill, joblib, cloudpickle\n"
              "from pickle import loads\n"
              "from torch import load as tload\n"
              "torch.load('w.pt')\n"                                   # 6
              "torch.load('w.pt', weights_only=False)\n"               # 7
              "torch.load('w.pt', weights_only=True)\n"                # 8: safe
              "pickle.loads(b'')\n"                                    # 9
              "loads(b'')\n"                                           # 10
              "p.load(f)\n"                                            # 11
              "np.load('a.npy', allow_pickle=True)\n"                  # 12
              "numpy.load('a.npy', None, True)\n"                      # 13
              "np.load('a.npy')\n"                                     # 14: safe (numpy's default)
              "np.load('a.npz', allow_pickle=False)\n"                 # 15: safe
              "dill.loads(b'')\n"                                      # 16
              "joblib.load('m.joblib')\n"                              # 17
              "cloudpickle.loads(b'')\n"                               # 18
              "pd.read_pickle('f.pkl')\n"                              # 19
              "pickle.Unpickler(f).load()\n"                           # 20
              "class U(p.Unpickler): pass\n"                           # 21
              "tload('w.pt', **kw)\n"                                  # 22
              "np.load('a.npy', **options)\n"                          # 23
              "reader = pickle.loads\n"                                # 24
              "pickle.dumps(obj)\n"                                    # 25: writing is safe
              "torch.save(x, 'w.pt')\n")                               # 26: safe
    assert unsafe_loads("foundry/x.py", source) == [
        "foundry/x.py:6: torch.load without weights_only=True",
        "foundry/x.py:7: torch.load without weights_only=True",
        "foundry/x.py:9: pickle.loads",
        "foundry/x.py:10: pickle.loads",
        "foundry/x.py:11: pickle.load",
        "foundry/x.py:12: numpy.load without allow_pickle=False",
        "foundry/x.py:13: numpy.load without allow_pickle=False",
        "foundry/x.py:16: dill.loads",
        "foundry/x.py:17: joblib.load",
        "foundry/x.py:18: cloudpickle.loads",
        "foundry/x.py:19: pandas.read_pickle",
        "foundry/x.py:20: pickle.Unpickler",
        "foundry/x.py:21: pickle.Unpickler",
        "foundry/x.py:22: torch.load without weights_only=True",
        "foundry/x.py:23: numpy.load without allow_pickle=False",
        "foundry/x.py:24: pickle.loads"]
    # No file is exempt: the drift detectors' module is checked like any other.
    assert unsafe_loads("foundry/drift/detectors.py", "import pickle\npickle.loads(b'')\n") == [
        "foundry/drift/detectors.py:2: pickle.loads"]
