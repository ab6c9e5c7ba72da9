"""From Hydra to typed, checked config and back: compose ``conf/``, turn the tree into ``FoundryConfig``
(``to_typed``: Hydra's type checks, then every section's ``validate``), and plain data or YAML again for
a Serve deployment, a Ray actor or the copy stored with every model version."""

from __future__ import annotations

from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from foundry.config.root import FoundryConfig, validate
from foundry.config.sources import bundled_conf_dir
from foundry.errors import ConfigError

CONF_DIR = bundled_conf_dir()


T = TypeVar("T")


def to_typed(cfg: DictConfig) -> FoundryConfig:
    """Turn a composed Hydra config into validated dataclasses; every failure names the offending key."""
    try:
        typed = OmegaConf.to_object(cfg)
    except Exception as exc:  # omegaconf raises several error types; all mean "this config is wrong"
        raise ConfigError(_describe(exc)) from exc
    if not isinstance(typed, FoundryConfig):
        raise ConfigError("the composed config does not use foundry_schema; list it first in defaults")
    return validate(typed)


def to_container(cfg: Any) -> dict[str, Any]:
    """The typed config (or a part of it: ``ReplicaConfig``, ``MonitorConfig``) as plain JSON-able data
    (enums as strings), e.g. to hand to a Serve deployment or an actor."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)


def part_from_container(cls: type[T], data: dict[str, Any]) -> T:
    """A config part that a process is built from (``ReplicaConfig``, ``MonitorConfig``), rebuilt from
    ``to_container`` data: type-checked (an unknown key names itself) and checked by its own ``validate()``."""
    try:
        typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), data))
    except Exception as exc:  # omegaconf raises several error types; all mean "this config is wrong"
        raise ConfigError(_describe(exc)) from exc
    return typed.validate()


def from_container(data: dict[str, Any]) -> FoundryConfig:
    """The inverse of ``to_container``, checked exactly like a composed config."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(FoundryConfig), data)
    except Exception as exc:  # omegaconf raises several error types; all mean "this config is wrong"
        raise ConfigError(_describe(exc)) from exc
    return to_typed(merged)


def _describe(exc: BaseException) -> str:
    """Hydra often wraps the useful message (with the key) in a bare exception; surface the chain."""
    messages = []
    while exc is not None:
        text = str(exc).strip()
        if text and text not in messages:
            messages.append(text)
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(messages) or "invalid configuration"


def compose(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """Compose the bundled ``conf/`` outside of any command line (tests, Ray actors); commands use
    ``foundry.config.sources`` for ``--config-dir`` / ``--from-version``."""
    from foundry.config.sources import ConfigSources
    from foundry.config.sources import compose as compose_sources

    return compose_sources(ConfigSources(tuple(overrides or ()), config_name=config_name))


def load(overrides: list[str] | None = None) -> FoundryConfig:
    return to_typed(compose(overrides))


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML, as stored with every model version."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg) if not isinstance(cfg, DictConfig) else cfg, resolve=True)
