"""The model a replica serves, and how it is replaced while requests keep flowing.

A swap resolves the ref in the registry, fetches the version (every file checked against its
manifest), builds the ``Predictor``, checks that it fits the API (same task and classes, no
feature the request schema does not carry) and runs one warm-up prediction. Only then is the new
``LoadedModel`` published, by a single reference assignment: a request that already took the old
one finishes with it, the next one gets the new one, and no request ever sees half of each. If
any step fails, the old model keeps serving and the error is kept for ``GET /model``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from foundry.config import DataConfig
from foundry.errors import ConfigError, FoundryError
from foundry.storage.layout import StorageLayout

_USER_CONFIG_KEYS = ("model", "ref", "version", "storage_root", "challenger", "mode", "fraction")
ROLLOUT_MODES = ("shadow", "canary")


class ModelUnavailable(FoundryError):
    """No model is loaded (the replica is still starting, or its first load failed)."""


@dataclass(frozen=True)
class ModelSpec:
    """What to serve: the content of the deployment's ``user_config``.

    ``version`` is the version id that ``serve_apps.deploy`` resolved ``ref`` to, so every replica,
    including ones started later by the autoscaler, serves the same version; ``ref`` is kept for
    display. Without a pinned version each replica resolves ``ref`` itself.
    """

    storage_root: str
    model: str
    ref: str
    version: str | None = None
    # A roll-out (foundry/rollout/): the challenger answers a copy of every request in the background
    # (``shadow``) or, with ``canary``, the requests whose id hashes below ``fraction`` (the champion
    # then answers a copy of those in the background). Both versions stay loaded in the replica.
    challenger: str | None = None
    mode: str | None = None
    fraction: float = 0.0

    @property
    def target(self) -> str:
        return self.version or self.ref

    @classmethod
    def from_user_config(cls, user_config: Any) -> ModelSpec:
        if not isinstance(user_config, dict):
            raise ConfigError(f"user_config must be a mapping with keys {list(_USER_CONFIG_KEYS)}, "
                              f"got {type(user_config).__name__}")
        unknown = sorted(set(user_config) - set(_USER_CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"user_config: unknown key(s) {unknown} (known: {list(_USER_CONFIG_KEYS)})")
        for key in ("model", "ref", "storage_root"):
            if not isinstance(user_config.get(key), str) or not user_config[key]:
                raise ConfigError(f"user_config.{key}: must be a non-empty string, got {user_config.get(key)!r}")
        version = user_config.get("version")
        if version is not None and not isinstance(version, str):
            raise ConfigError(f"user_config.version: must be a version id or null, got {version!r}")
        challenger, mode = user_config.get("challenger"), user_config.get("mode")
        fraction = user_config.get("fraction", 0.0) or 0.0
        if challenger is not None and (not isinstance(challenger, str) or not version):
            raise ConfigError(f"user_config.challenger: must be a version id next to a pinned version, got {challenger!r}")
        if challenger and mode not in ROLLOUT_MODES:
            raise ConfigError(f"user_config.mode: must be one of {list(ROLLOUT_MODES)} with a challenger, got {mode!r}")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise ConfigError(f"user_config.fraction: must be a number in [0, 1], got {fraction!r}")
        return cls(storage_root=user_config["storage_root"], model=user_config["model"],
                   ref=user_config["ref"], version=version or None, challenger=challenger or None,
                   mode=mode if challenger else None, fraction=float(fraction) if challenger else 0.0)

    def to_user_config(self) -> dict[str, Any]:
        out = {"model": self.model, "ref": self.ref, "version": self.version, "storage_root": self.storage_root}
        if self.challenger:
            out.update(challenger=self.challenger, mode=self.mode, fraction=self.fraction)
        return out


@dataclass(frozen=True)
class LoadedModel:
    model: str
    version: str
    ref: str
    storage_root: str
    predictor: Any  # foundry.models.predictor.Predictor (imported lazily: torch is heavy)
    created_at: str
    metadata: dict[str, Any] = field(repr=False)
    loaded_at: str = ""
    load_seconds: float = 0.0

    def info(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "ref": self.ref, "created_at": self.created_at,
                "loaded_at": self.loaded_at, "load_seconds": round(self.load_seconds, 3),
                "task": self.predictor.task.value, "features": self.predictor.preprocessor.feature_names,
                "classes": self.predictor.preprocessor.classes, "metadata": self.metadata}


@dataclass(frozen=True)
class Serving:
    """What a replica serves, published as one object: the champion and, during a roll-out, the
    challenger with the mode and fraction (a request takes this once, so it never sees half a change)."""

    champion: LoadedModel
    challenger: LoadedModel | None = None
    mode: str | None = None
    fraction: float = 0.0

    def info(self) -> dict[str, Any]:
        out = self.champion.info()
        out["rollout"] = None if self.challenger is None else {
            "mode": self.mode, "champion": self.champion.version, "challenger": self.challenger.version,
            "fraction": self.fraction if self.mode == "canary" else 0.0, "challenger_created_at": self.challenger.created_at}
        return out


@dataclass(frozen=True)
class SwapOutcome:
    changed: bool
    version: str | None  # the version serving after the attempt
    error: dict[str, Any] | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def check_compatible(predictor: Any, data: DataConfig) -> None:
    """A version fits the API if the request schema carries every feature it reads and its task and
    classes are the ones the response and /feedback models were built for."""
    pre = predictor.preprocessor
    if pre.task != data.task.value:
        raise FoundryError(f"the version is a {pre.task} model but the API serves a {data.task.value} task")
    if data.classes is not None and list(pre.classes or []) != list(data.classes):
        raise FoundryError(f"the version predicts classes {pre.classes}, the API's are {list(data.classes)}")
    accepted = {f.name for f in data.features}
    missing = [name for name in pre.feature_names if name not in accepted]
    if missing:
        raise FoundryError(f"the version reads feature(s) {missing} that the request schema does not have")


def warm_up_frame(predictor: Any) -> pd.DataFrame:
    """One typical row (training means, first known category): proves the model runs end to end."""
    pre = predictor.preprocessor
    row: dict[str, list] = {n.name: [n.mean] for n in pre.numeric}
    row.update({c.name: [c.categories[0] if c.categories else None] for c in pre.categorical})
    return pd.DataFrame(row)


def load_version(spec: ModelSpec, data: DataConfig, device: str = "cpu") -> LoadedModel:
    """Resolve, fetch (checksums verified), build, check and warm up one version; raise on any problem."""
    from foundry.models.predictor import Predictor

    started = time.perf_counter()
    registry = StorageLayout(spec.storage_root).open_registry()
    mv = registry.get(spec.model, spec.target)
    path = registry.fetch(spec.model, mv.version)
    predictor = Predictor.from_dir(path, device=device)
    check_compatible(predictor, data)
    predictor.predict(warm_up_frame(predictor))
    return LoadedModel(model=spec.model, version=mv.version, ref=spec.ref, storage_root=spec.storage_root,
                       predictor=predictor, created_at=mv.created_at, metadata=mv.metadata, loaded_at=_now(),
                       load_seconds=time.perf_counter() - started)


class ModelHolder:
    """The replica's current model(s); ``swap`` replaces them only with fully loaded, working ones."""

    def __init__(self, data: DataConfig, device: str = "cpu",
                 loader: Callable[[ModelSpec, DataConfig, str], LoadedModel] = load_version):
        self._data = data
        self._device = device
        self._loader = loader
        self._serving: Serving | None = None
        self._last_error: dict[str, Any] | None = None
        self._lock = threading.Lock()  # one swap at a time; readers never take it

    @property
    def current(self) -> LoadedModel | None:
        """The champion (the version that answers every request outside a canary's share)."""
        serving = self._serving
        return serving.champion if serving else None

    @property
    def serving(self) -> Serving | None:
        return self._serving

    @property
    def last_error(self) -> dict[str, Any] | None:
        return self._last_error

    def require(self) -> LoadedModel:
        return self.require_serving().champion

    def require_serving(self) -> Serving:
        serving = self._serving
        if serving is None:
            raise ModelUnavailable("no model is loaded yet")
        return serving

    def _reuse(self, spec: ModelSpec, version: str | None) -> LoadedModel | None:
        """A loaded version to keep (a promotion swaps the roles of two loaded versions: nothing loads)."""
        serving = self._serving
        if serving is None or version is None:
            return None
        for loaded in (serving.champion, serving.challenger):
            if loaded is not None and loaded.version == version and loaded.storage_root == spec.storage_root \
                    and loaded.model == spec.model:
                return loaded
        return None

    def swap(self, spec: ModelSpec) -> SwapOutcome:
        """Load ``spec`` and publish it. With no model yet a failure raises (nothing could serve);
        afterwards it is recorded and the current model(s) stay. A challenger that cannot load leaves
        the champion serving alone (its error shows in GET /model)."""
        with self._lock:
            serving = self._serving
            current = serving.champion if serving else None
            champion = self._reuse(spec, spec.version)
            try:
                if champion is None:
                    champion = self._loader(spec, self._data, self._device)
                else:
                    champion = replace(champion, ref=spec.ref)
            except Exception as exc:
                error = {"ref": spec.ref, "version": spec.version, "error": f"{type(exc).__name__}: {exc}",
                         "at": _now(), "kept_version": current.version if current else None}
                self._last_error = error
                if current is None:
                    raise
                return SwapOutcome(changed=False, version=current.version, error=error)
            challenger, error = None, None
            if spec.challenger:
                challenger = self._reuse(spec, spec.challenger)
                if challenger is None:
                    try:
                        challenger = self._loader(replace(spec, ref=spec.challenger, version=spec.challenger),
                                                  self._data, self._device)
                    except Exception as exc:
                        error = {"ref": spec.challenger, "version": spec.challenger, "role": "challenger",
                                 "error": f"{type(exc).__name__}: {exc}", "at": _now(), "kept_version": champion.version}
            self._serving = Serving(champion, challenger, spec.mode if challenger else None,
                                    spec.fraction if challenger else 0.0)  # the switch: one assignment
            self._last_error = error
            return SwapOutcome(changed=current is None or current.version != champion.version,
                               version=champion.version, error=error)

    def info(self) -> dict[str, Any]:
        serving = self._serving
        out: dict[str, Any] = serving.info() if serving else {"model": None, "version": None, "rollout": None}
        out["last_swap_error"] = self._last_error
        return out


def user_config_for(storage_root: str, model: str, ref: str, version: str | None, challenger: str | None = None,
                    mode: str | None = None, fraction: float = 0.0) -> dict[str, Any]:
    """The ``user_config`` that makes replicas serve ``version`` (``ref`` is shown in /model), with a
    challenger during a roll-out."""
    return ModelSpec(storage_root=storage_root, model=model, ref=ref, version=version, challenger=challenger,
                     mode=mode, fraction=fraction).to_user_config()

