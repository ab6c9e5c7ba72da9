"""The manifest: the one record that makes a version exist, and its in-memory form.

A version directory without a manifest is a write in progress (or a crashed one); the manifest is
written last, so everything it lists was already in place when it appeared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import PurePath
from typing import Any

from foundry.errors import RegistryError, TamperedArtifactError

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class ModelVersion:
    """A complete, registered version. Equality and hashing use (model, version): ids are never reused."""

    model: str
    version: str
    created_at: str  # ISO 8601, UTC; the same instant the version id encodes
    files: dict[str, dict[str, Any]] = field(compare=False)  # relpath -> {"sha256", "size"}
    metadata: dict[str, Any] = field(compare=False)
    uri: str = field(compare=False)  # the version directory, as a URI under the registry root

    @property
    def metrics(self) -> dict[str, Any]:
        return self.metadata.get("metrics", {})

    def manifest(self) -> dict[str, Any]:
        return {"format": MANIFEST_FORMAT, "model": self.model, "version": self.version,
                "created_at": self.created_at, "files": self.files, "metadata": self.metadata}


def _json_default(obj: Any) -> Any:
    """Training code hands over numpy scalars, paths and enums; store them as plain JSON values."""
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, (PurePath, datetime)):
        return str(obj) if isinstance(obj, PurePath) else obj.isoformat()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(payload: Any) -> bytes:
    try:
        return json.dumps(payload, indent=2, sort_keys=True, default=_json_default).encode() + b"\n"
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"metadata cannot be stored as JSON: {exc}") from exc


def normalize_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """Round-trip through JSON up front so a bad value fails before any artifact is copied,
    and the returned ModelVersion holds exactly what a later ``get`` will read back."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise RegistryError(f"metadata must be a dict, got {type(metadata).__name__}")
    return json.loads(dumps(metadata))


def is_safe_relpath(rel: str) -> bool:
    """Manifest paths are joined onto local directories on fetch; none may climb out of them."""
    parts = rel.split("/")
    return (bool(rel) and "\\" not in rel and not rel.startswith("/")
            and all(p not in ("", ".", "..") for p in parts) and rel != MANIFEST)


def parse(raw: bytes, model: str, version: str, uri: str) -> ModelVersion:
    """Manifests are written atomically, so one that does not parse or names another version was altered."""
    where = f"{uri}/{MANIFEST}"
    try:
        doc = json.loads(raw)
        files = doc["files"]
        ok = (doc["model"] == model and doc["version"] == version and isinstance(files, dict)
              and all(isinstance(v, dict) and "sha256" in v and "size" in v for v in files.values()))
    except (ValueError, KeyError, TypeError) as exc:
        raise TamperedArtifactError(f"{where} is not a valid manifest ({exc})") from exc
    if not ok:
        raise TamperedArtifactError(f"{where} does not describe {model}/{version}")
    bad = [rel for rel in files if not is_safe_relpath(rel)]
    if bad:
        raise TamperedArtifactError(f"{where} lists unsafe file paths {bad}")
    return ModelVersion(model=model, version=version, created_at=doc["created_at"], files=files,
                        metadata=doc.get("metadata") or {}, uri=uri)
