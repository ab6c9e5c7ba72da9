"""Importing alibi-detect without Hugging Face ``transformers``: 2 s (an idle process) to 4 s (a busy
2-core node) off every process that builds or loads detectors: the monitor actor's start and
restart, the training job's detector build.

``import alibi_detect`` imports the whole package, and three of its modules take names from
``transformers`` at module level: the text embedding (``alibi_detect.models.pytorch.embedding``:
``AutoModel``, ``AutoConfig``) and alibi-detect's own save/load (``alibi_detect.saving``:
``PreTrainedTokenizerBase``, ``AutoTokenizer``). Foundry's detectors are tabular and it stores them
itself (``detector_store``: safetensors and JSON, never alibi-detect's pickles), so it never uses any
of those names; importing ``transformers`` for them (its version checks scan every installed
distribution, and it pulls in ``torch.distributed.tensor`` and ``torch._dynamo``) was most of the
cost of importing alibi-detect.

``transformers_deferred()`` wraps the import of alibi-detect: meanwhile ``transformers`` resolves to
a stand-in module whose every public name is a ``DeferredName``. A deferred name imports the real
package the first time it is used (called, an attribute read, an ``isinstance``/``issubclass``
check) and forwards to it, so an alibi-detect text embedding or save still works, only later. The
stand-in leaves ``sys.modules`` when the block ends: any later ``import transformers`` (a user's
own detector, say) gets the real package. Where ``transformers`` is already imported it is used as
it is. Written against the pinned alibi-detect (0.13); if a later version imports more from
``transformers`` at module level, those names are deferred the same way.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import types
from collections.abc import Iterator

PACKAGE = "transformers"
_lock = threading.Lock()  # the stand-in is put in and taken out of sys.modules by one thread at a time


class _StandIn(types.ModuleType):
    """``transformers`` while alibi-detect is imported: names are deferred, dunders do not exist (so the
    import system and ``typing`` see a plain module, not a package to search)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return DeferredName(name)


class DeferredName:
    """A name from ``transformers``, imported on first use."""

    def __init__(self, name: str):
        self._name = name

    def resolve(self):
        """The real object: imports ``transformers`` (the real package) if nothing has yet."""
        with _lock:
            if isinstance(sys.modules.get(PACKAGE), _StandIn):  # used inside the block itself
                del sys.modules[PACKAGE]
        return getattr(importlib.import_module(PACKAGE), self._name)

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, attr: str):
        if attr.startswith("__"):  # typing and introspection probe dunders: never a reason to import
            raise AttributeError(attr)
        return getattr(self.resolve(), attr)

    def __instancecheck__(self, obj) -> bool:
        return isinstance(obj, self.resolve())

    def __subclasscheck__(self, cls) -> bool:
        return issubclass(cls, self.resolve())

    def __repr__(self) -> str:
        return f"<transformers.{self._name}, imported on first use>"


@contextlib.contextmanager
def transformers_deferred() -> Iterator[None]:
    """Within the block, ``import transformers`` gives the stand-in (unless the real one is imported)."""
    stand_in = None
    with _lock:
        if PACKAGE not in sys.modules:
            stand_in = sys.modules[PACKAGE] = _StandIn(PACKAGE)
    try:
        yield
    finally:
        with _lock:
            if stand_in is not None and sys.modules.get(PACKAGE) is stand_in:
                del sys.modules[PACKAGE]
