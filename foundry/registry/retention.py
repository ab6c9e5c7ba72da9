"""Removing versions: retention's deletes and the leftovers of crashed writers.

Both keep the registry's one invariant (a version exists iff its manifest does): ``delete_version``
removes the manifest first, so a reader sees a complete version or none, and refuses a version an
alias points at; ``gc_incomplete`` only takes directories that never got a manifest and whose newest
file is older than the threshold, so a slow writer still copying is left alone. Which versions to
delete is decided elsewhere (``foundry.ops.maintenance``).

A mixin of ``Registry`` (``foundry.registry.store``): it uses the registry's filesystem (``_fs``), its
layout helpers (``_manifest_path``, ``_version_path``, ``_version_ids``, ``_list``) and ``aliases``.
"""

from __future__ import annotations

import time

from foundry import storage
from foundry.errors import RegistryError
from foundry.registry.names import check_model


class Retention:
    """``delete_version`` and ``gc_incomplete``."""

    def delete_version(self, model: str, version: str) -> None:
        """Remove a version (retention; ``foundry.ops.maintenance`` decides which). The manifest goes first,
        so a reader sees a complete version or none, never one with missing files."""
        check_model(model)
        if version in {r.get("version") for r in self.aliases(model).values()}:
            raise RegistryError(f"{model}@{version} is the target of an alias; move the alias first")
        manifest = self._manifest_path(model, version)
        if storage.exists(self._fs, manifest):
            self._fs.delete_file(manifest)
        vpath = self._version_path(model, version)
        if storage.exists(self._fs, vpath):
            self._fs.delete_dir(vpath)

    def gc_incomplete(self, model: str, older_than_s: float = 3600) -> list[str]:
        """Delete version directories that never got a manifest (a crashed writer's leftovers).

        Age is measured from the newest file inside, so a slow writer that is still copying is not
        collected; the threshold must exceed the longest pause a live writer can have.
        """
        check_model(model)
        if older_than_s < 0:
            raise RegistryError(f"older_than_s must be >= 0, got {older_than_s}")
        now_ns = time.time_ns()
        removed = []
        for version in self._version_ids(model):
            manifest = self._manifest_path(model, version)
            if storage.exists(self._fs, manifest):
                continue
            vpath = self._version_path(model, version)
            stamps = [i.mtime_ns for i in [self._fs.get_file_info(vpath), *self._list(vpath, recursive=True)]
                      if i.mtime_ns is not None]
            if older_than_s > 0 and (not stamps or now_ns - max(stamps) < older_than_s * 1e9):
                continue
            if storage.exists(self._fs, manifest):  # finished while we looked
                continue
            self._fs.delete_dir(vpath)
            removed.append(version)
        return removed
